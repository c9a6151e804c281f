// Reductions on the CPU: sum/mean over dim sets against f64 references, max/argmax, sum_to,
// gradcheck.
#include <doctest/doctest.h>

#include "autograd/gradcheck.h"
#include "ops/reduce.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;
using test::random_tensor;

namespace {
// Reference sum over `dims` of a [2, 3, 4, 5] tensor, by brute force.
std::vector<double> reference_sum(const Tensor& x, const std::vector<int64_t>& dims) {
  const auto v = host_values(x);
  const Shape s = x.shape();
  std::vector<bool> reduced(4, false);
  for (int64_t d : dims) reduced[static_cast<size_t>(d)] = true;
  Shape out = s;
  for (int d = 0; d < 4; ++d)
    if (reduced[static_cast<size_t>(d)]) out[d] = 1;
  std::vector<double> result(static_cast<size_t>(out.numel()), 0.0);
  for (int64_t i = 0; i < s[0]; ++i)
    for (int64_t j = 0; j < s[1]; ++j)
      for (int64_t k = 0; k < s[2]; ++k)
        for (int64_t l = 0; l < s[3]; ++l) {
          const int64_t idx[4] = {i, j, k, l};
          int64_t o = 0;
          for (int d = 0; d < 4; ++d) o = o * out[d] + (reduced[static_cast<size_t>(d)] ? 0 : idx[d]);
          result[static_cast<size_t>(o)] += v[static_cast<size_t>(((i * s[1] + j) * s[2] + k) * s[3] + l)];
        }
  return result;
}
}  // namespace

TEST_CASE("sum and mean over every kind of dim set match f64 references") {
  const Tensor x = random_tensor({2, 3, 4, 5}, 60);
  const std::vector<std::vector<int64_t>> dim_sets = {{0}, {1}, {3}, {0, 1}, {1, 2}, {2, 3}, {0, 2}, {1, 3}, {0, 1, 2, 3}, {-1}};
  for (const auto& dims : dim_sets) {
    std::vector<int64_t> wrapped;
    for (int64_t d : dims) wrapped.push_back(d < 0 ? d + 4 : d);
    CAPTURE(Shape(dims).str());
    const auto expected = reference_sum(x, wrapped);
    CHECK(test::relative_error(host_values(sum(x, dims, true)), expected) < 1e-6);
    CHECK(sum(x, dims, true).dim() == 4);
    CHECK(sum(x, dims, false).dim() == 4 - static_cast<int64_t>(dims.size()));
    double count = 1;
    for (int64_t d : wrapped) count *= static_cast<double>(x.shape()[d]);
    auto expected_mean = expected;
    for (double& e : expected_mean) e /= count;
    CHECK(test::relative_error(host_values(mean(x, dims)), expected_mean) < 1e-6);
  }
  CHECK(sum(x).dim() == 0);
}

TEST_CASE("max and argmax return the first maximum") {
  const Tensor x = from_vector<float>({1, 5, 5, 2, 9, 0, 3, 3, 7, 1, 1, 1}, {3, 4});
  const MaxResult rows = max(x, 1);
  CHECK(rows.values.to_vector<float>() == std::vector<float>{5, 9, 7});
  CHECK(rows.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0});
  CHECK(argmax(x, 0).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0, 1});
  CHECK(argmax(x, -1, true).shape() == Shape{3, 1});
  CHECK_THROWS_AS(max(zeros({0, 3}), 0), ValueError);
}

TEST_CASE("sum_to undoes broadcasting") {
  const Tensor g = random_tensor({4, 2, 3}, 61);
  const auto v = host_values(g);
  const auto bias = host_values(sum_to(g, {3}));
  for (int64_t j = 0; j < 3; ++j) {
    double e = 0;
    for (int64_t i = 0; i < 8; ++i) e += v[static_cast<size_t>(i * 3 + j)];
    CHECK(bias[static_cast<size_t>(j)] == doctest::Approx(e).epsilon(1e-6));
  }
  CHECK(sum_to(g, {2, 1}).shape() == Shape{2, 1});
  CHECK(sum_to(g, {4, 2, 3}).same(g));
  CHECK_THROWS_AS(sum_to(g, {5, 3}), ShapeError);
}

TEST_CASE("sum_to of bf16 into f32: the f32 sum unrounded, and no other dtype pairs") {
  const Tensor g = random_tensor({40, 3}, 62, -2, 2, DType::bf16);
  const Tensor wide = sum_to(g, {3}, DType::f32);
  CHECK(wide.dtype() == DType::f32);
  CHECK(host_values(wide) == host_values(sum_to(g.to(DType::f32), {3})));  // the same numbers, summed in f32
  CHECK(host_values(sum_to(g, {3})) != host_values(wide));                   // the bf16 sum is rounded
  CHECK(sum_to(g, {40, 3}, DType::f32).dtype() == DType::f32);                // nothing to sum: converted
  CHECK_THROWS_WITH_AS(sum_to(random_tensor({4, 3}, 63), {3}, DType::bf16),
                       "sum_to: a f32 input sums into its own dtype (or f32 for bf16), not bf16", TypeError);
}

TEST_CASE("gradcheck: sum and mean") {
  Tensor x = random_tensor({3, 1, 4}, 62, -1, 1, DType::f64);
  x.set_requires_grad(true);
  for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{}, {0}, {2}, {0, 2}, {1}}) {
    for (bool keepdim : {false, true}) {
      const auto s = gradcheck([&](const std::vector<Tensor>& in) { return sum(in[0], dims, keepdim); }, {x});
      CHECK_MESSAGE(s.ok, s.message);
      const auto m = gradcheck([&](const std::vector<Tensor>& in) { return mean(in[0], dims, keepdim); }, {x});
      CHECK_MESSAGE(m.ok, m.message);
    }
  }
}
