// Elementwise and reduction ops on CUDA against the CPU (forward and gradients, poisoned outputs).
#include <doctest/doctest.h>

#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::check_cuda_matches_cpu;
using test::random_tensor;


TEST_CASE("binary ops with broadcasting: CUDA matches CPU") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{1000}, {1000}}, {{37, 129}, {129}}, {{2, 1, 65}, {3, 1}}, {{1}, {9, 3}}, {{4, 197, 192}, {4, 1, 192}}};
  uint64_t seed = 100;
  for (const auto& [sa, sb] : cases) {
    CAPTURE(sa.str());
    const Tensor a = test::random_param(sa, seed++), b = test::random_param(sb, seed++, 0.5, 2);
    check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return in[0] + in[1]; }, {a, b});
    check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return in[0] - in[1]; }, {a, b});
    check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return in[0] * in[1]; }, {a, b});
    check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return in[0] / in[1]; }, {a, b});
  }
}

TEST_CASE("unary ops: CUDA matches CPU, contiguous and strided") {
  const Tensor x = test::random_param({33, 257}, 120, -3, 3);
  const Tensor p = test::random_param({1, 1001}, 121, 0.1, 3);
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return exp(in[0]); }, {x});
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return log(in[0]); }, {p});
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return sqrt(in[0]); }, {p});
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return tanh(in[0]); }, {x});
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return relu(in[0]); }, {x});
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return gelu(in[0]); }, {x});
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return gelu(in[0], GeluApproximation::tanh); }, {x});
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return 1.0 - in[0] * 0.5; }, {x});
  const Tensor strided = random_tensor({64, 48}, 122);
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return exp(in[0].raw_transpose(0, 1)); }, {strided});
}

TEST_CASE("sum, mean, max: CUDA matches CPU across row, column and split reductions") {
  const Tensor x = test::random_param({6, 35, 129}, 130);
  for (const std::vector<int64_t>& dims :
       std::vector<std::vector<int64_t>>{{}, {0}, {1}, {2}, {0, 1}, {1, 2}, {0, 2}}) {
    CAPTURE(Shape(dims).str());
    check_cuda_matches_cpu([&](const std::vector<Tensor>& in) { return sum(in[0], dims); }, {x});
    check_cuda_matches_cpu([&](const std::vector<Tensor>& in) { return mean(in[0], dims, true); }, {x});
  }
  // A tall column reduction (bias gradient of a ViT-B linear) takes the two-pass path.
  const Tensor tall = test::random_param({12608, 24}, 131);
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return sum(in[0], {0}); }, {tall});
  const Tensor y = random_tensor({7, 1000}, 132);
  CHECK(argmax(y.to(Device::cuda(0)), 1).to_vector<int64_t>() == argmax(y, 1).to_vector<int64_t>());
  CHECK(max(y.to(Device::cuda(0)), 0).values.to(Device::cpu()).to_vector<float>() == max(y, 0).values.to_vector<float>());
}
