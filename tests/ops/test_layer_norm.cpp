// layer_norm on the CPU: f64 references (affine, weight only, non-affine) over odd shapes and
// size-1 dims, gradcheck of x, weight and bias, what backward keeps, and errors.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "ops/layer_norm.h"
#include "ops/shape_ops.h"
#include "tests/ops/residual_norm_check.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;
using test::random_tensor;

namespace {

std::vector<double> reference(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  std::vector<double> v = host_values(x);
  const std::vector<double> w = weight.defined() ? host_values(weight) : std::vector<double>();
  const std::vector<double> b = bias.defined() ? host_values(bias) : std::vector<double>();
  const size_t cols = static_cast<size_t>(x.size(-1));
  for (size_t r = 0; r * cols < v.size(); ++r) {
    double* row = v.data() + r * cols;
    double mean = 0, var = 0;
    for (size_t j = 0; j < cols; ++j) mean += row[j];
    mean /= static_cast<double>(cols);
    for (size_t j = 0; j < cols; ++j) var += (row[j] - mean) * (row[j] - mean);
    var /= static_cast<double>(cols);
    for (size_t j = 0; j < cols; ++j) {
      row[j] = (row[j] - mean) / std::sqrt(var + eps);
      if (!w.empty()) row[j] *= w[j];
      if (!b.empty()) row[j] += b[j];
    }
  }
  return v;
}

}  // namespace

TEST_CASE("layer_norm matches f64 references, affine or not") {
  uint64_t seed = 300;
  for (const Shape& shape : std::vector<Shape>{{1, 7}, {3, 5, 33}, {2, 1, 1000}, {4, 192}, {5, 1}, {9}}) {
    CAPTURE(shape.str());
    const int64_t d = shape[shape.ndim() - 1];
    const Tensor x = random_tensor(shape, seed++, -3, 5);  // mean far from 0: tests the centering
    const Tensor w = random_tensor({d}, seed++, 0.5, 2), b = random_tensor({d}, seed++);
    for (double eps : {1e-5, 0.1}) {
      CHECK(test::relative_error(host_values(layer_norm(x, w, b, eps)), reference(x, w, b, eps)) < 1e-5);
      if (d == 1) continue;  // a single column normalizes to exactly 0: nothing to compare against
      CHECK(test::relative_error(host_values(layer_norm(x, w, Tensor(), eps)), reference(x, w, Tensor(), eps)) < 1e-5);
      CHECK(test::relative_error(host_values(layer_norm(x, Tensor(), Tensor(), eps)),
                                 reference(x, Tensor(), Tensor(), eps)) < 1e-5);
    }
    const Tensor xd = x.to(DType::f64), wd = w.to(DType::f64), bd = b.to(DType::f64);
    CHECK(test::relative_error(host_values(layer_norm(xd, wd, bd)), reference(xd, wd, bd, 1e-5)) < 1e-12);
  }
  const Tensor x = random_tensor({6, 64}, 320);
  const Tensor bf = layer_norm(x.to(DType::bf16), Tensor(), Tensor());
  CHECK(bf.dtype() == DType::bf16);
  CHECK(test::relative_error(host_values(bf), reference(x, Tensor(), Tensor(), 1e-5)) < 2e-2);
}

TEST_CASE("gradcheck: layer_norm input, weight and bias") {
  uint64_t seed = 330;
  for (const Shape& shape : std::vector<Shape>{{3, 7}, {2, 1, 5}, {4}}) {
    CAPTURE(shape.str());
    const int64_t d = shape[shape.ndim() - 1];
    Tensor x = random_tensor(shape, seed++, -2, 3, DType::f64);
    Tensor w = random_tensor({d}, seed++, 0.5, 2, DType::f64), b = random_tensor({d}, seed++, -1, 1, DType::f64);
    for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
    const auto affine = gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-3); },
                                  {x, w, b});
    CHECK_MESSAGE(affine.ok, affine.message);
    const auto plain = gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), Tensor()); }, {x});
    CHECK_MESSAGE(plain.ok, plain.message);
    const auto weight_only = gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor()); },
                                       {x, w});
    CHECK_MESSAGE(weight_only.ok, weight_only.message);
  }
}

TEST_CASE("layer_norm gradients only where needed; weight/bias gradients without an input gradient") {
  const Tensor x = random_tensor({5, 6}, 340, -1, 1, DType::f64);  // needs no gradient
  Tensor w = random_tensor({6}, 341, 0.5, 2, DType::f64), b = random_tensor({6}, 342, -1, 1, DType::f64);
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  const Tensor g = random_tensor({5, 6}, 343, -1, 1, DType::f64);
  backward(layer_norm(x, w, b), g);
  // dbias = sum of g over rows; dweight = sum of g * xhat over rows.
  const auto gv = host_values(g), xhat = reference(x, Tensor(), Tensor(), 1e-5);
  const auto dw = host_values(w.grad()), db = host_values(b.grad());
  for (size_t j = 0; j < 6; ++j) {
    double ew = 0, eb = 0;
    for (size_t r = 0; r < 5; ++r) {
      ew += gv[r * 6 + j] * xhat[r * 6 + j];
      eb += gv[r * 6 + j];
    }
    CHECK(dw[j] == doctest::Approx(ew).epsilon(1e-10));
    CHECK(db[j] == doctest::Approx(eb).epsilon(1e-10));
  }
}

TEST_CASE("layer_norm backward keeps the input, mean and rstd, not the output") {
  Tensor x = random_tensor({8, 48}, 350);
  x.set_requires_grad(true);
  const Tensor w = random_tensor({48}, 351);
  const Tensor y = layer_norm(x, w, Tensor());
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->name() == "LayerNormBackward");
  CHECK(y.grad_fn()->saved_bytes() == x.nbytes() + 2 * 8 * sizeof(float) + w.nbytes());
  const Tensor plain = layer_norm(x, Tensor(), Tensor());
  CHECK(plain.grad_fn()->saved_bytes() == x.nbytes() + 2 * 8 * sizeof(float));
}

TEST_CASE("layer_norm errors name what was expected and what was got") {
  const Tensor x = zeros({2, 4});
  CHECK_THROWS_WITH_AS(layer_norm(x, zeros({3}), Tensor()),
                       "layer_norm: expected weight of shape [4] for input of shape [2, 4], got [3]", ShapeError);
  CHECK_THROWS_WITH_AS(layer_norm(x, Tensor(), zeros({4, 1})),
                       "layer_norm: expected bias of shape [4] for input of shape [2, 4], got [4, 1]", ShapeError);
  CHECK_THROWS_WITH_AS(layer_norm(x, zeros({4}, DType::f64), Tensor()),
                       "layer_norm: expected all tensors of dtype f32, got f64", TypeError);
  CHECK_THROWS_WITH_AS(layer_norm(x, Tensor(), Tensor(), -1), "layer_norm: expected eps >= 0, got -1", ValueError);
  CHECK_THROWS_WITH_AS(layer_norm(zeros({2}, DType::i32), Tensor(), Tensor()),
                       "layer_norm: expected a floating dtype, got i32", TypeError);
  CHECK_THROWS_WITH_AS(layer_norm(x, Tensor(), Tensor(), 1e-5, DType::f64),
                       "layer_norm: expected an output dtype of f32 or bf16, got f64", TypeError);
  CHECK_THROWS_WITH_AS(layer_norm(x.to(DType::f64), Tensor(), Tensor(), 1e-5, DType::bf16),
                       "layer_norm: expected an output dtype of f64, got bf16", TypeError);
}

// The output in the autocast dtype is the f32 result rounded once, and the gradients that come
// back through it are those of the f32 norm followed by a cast, bit for bit.
TEST_CASE("layer_norm with a bf16 output equals the f32 norm cast to bf16, gradients included") {
  auto run = [](bool fused) {
    Tensor x = test::random_param({6, 40}, 830, -3, 3), w = test::random_param({40}, 831, 0.5, 2),
           b = test::random_param({40}, 832);
    const Tensor y = fused ? layer_norm(x, w, b, 1e-6, DType::bf16) : cast(layer_norm(x, w, b, 1e-6), DType::bf16);
    CHECK(y.dtype() == DType::bf16);
    backward(y, random_tensor({6, 40}, 833, -1, 1, DType::f32).to(DType::bf16));
    return std::vector<std::vector<double>>{host_values(y), host_values(x.grad()), host_values(w.grad()),
                                            host_values(b.grad())};
  };
  CHECK(run(true) == run(false));
}

TEST_CASE("layer_norm's backward adds x's gradient into the residual stream's, bit for bit the engine's sum") {
  uint64_t seed = 900;
  for (const Shape& shape : std::vector<Shape>{{3, 5, 33}, {2, 7, 128}, {1, 1}}) {
    for (DType dtype : {DType::f32, DType::f64, DType::bf16})
      test::check_norm_adds_into_residual_gradient(Device::cpu(), dtype, dtype, shape, seed += 4);
    test::check_norm_adds_into_residual_gradient(Device::cpu(), DType::f32, DType::bf16, shape, seed += 4);
  }
}
