// Elementwise and reduction ops on CUDA against the CPU (forward and gradients, poisoned outputs).
#include <doctest/doctest.h>

#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/shape_ops.h"
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

TEST_CASE("add_converted (f32 + bf16): CUDA matches CPU, aligned and not") {
  const Tensor a = test::random_param({4, 197, 768}, 140);
  Tensor b = test::random_param({4, 197, 768}, 141).detach().to(DType::bf16);
  b.set_requires_grad(true);
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return add_converted(in[0], in[1]); }, {a, b});
  // An odd offset leaves the 16-byte vector path: the scalar kernel.
  const Tensor a_odd = test::random_param({1001}, 142), b_odd = test::random_param({1002}, 143).detach().to(DType::bf16);
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return add_converted(in[0], narrow(in[1], 0, 1, 1001)); },
                         {a_odd, b_odd});
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
  // The bias gradients of ViT-B/16 (12608 rows of 768 and 3072: 16-byte loads), a width of whole
  // vectors but not of whole 256-column tiles, and one that is no multiple of the 32-column tile
  // (element loads), in f32 and bf16; reruns are bit-identical (fixed order, no atomics).
  for (const Shape& shape : std::vector<Shape>{{12608, 768}, {12608, 3072}, {3, 300, 264}, {3, 4100, 45}, {2, 1}}) {
    CAPTURE(shape.str());
    const Tensor wide = test::random_param(shape, 133);
    check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return sum(in[0], {in[0].dim() - 2}); }, {wide});
    const Tensor on_gpu = wide.detach().to(DType::bf16).to(Device::cuda(0));
    const Tensor bf16_sum = sum(on_gpu, {on_gpu.dim() - 2});
    CHECK(test::relative_error(test::host_values(bf16_sum), test::host_values(sum(wide.detach(), {wide.dim() - 2}))) <
          1e-2);
    CHECK(test::host_values(sum(on_gpu, {on_gpu.dim() - 2})) == test::host_values(bf16_sum));
    // bf16 into f32 (mixed precision's bias gradients): the CPU's f32 sum of the same values.
    Shape kept = shape;
    kept[kept.ndim() - 2] = 1;
    const Tensor wide_sum = sum_to(on_gpu, kept, DType::f32);
    CHECK(wide_sum.dtype() == DType::f32);
    CHECK(test::relative_error(test::host_values(wide_sum), test::host_values(sum_to(on_gpu.to(Device::cpu()), kept,
                                                                                       DType::f32))) < 1e-5);
  }
  const Tensor y = random_tensor({7, 1000}, 132);
  CHECK(argmax(y.to(Device::cuda(0)), 1).to_vector<int64_t>() == argmax(y, 1).to_vector<int64_t>());
  CHECK(max(y.to(Device::cuda(0)), 0).values.to(Device::cpu()).to_vector<float>() == max(y, 0).values.to_vector<float>());
}
