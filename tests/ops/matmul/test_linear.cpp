// linear on the CPU: forward against f64 loop references (1-D to 3-D inputs, odd sizes, strided
// input, with and without bias, f32/f64/bf16), gradcheck, what the node saves and hands to its
// strategy, and error messages.
#include <doctest/doctest.h>

#include <utility>

#include "autograd/gradcheck.h"
#include "ops/matmul/gemm.h"
#include "ops/matmul/linear.h"
#include "tests/support/op_checks.h"
#include "tests/support/recording_strategy.h"

using namespace tg;
using test::host_values;
using test::random_tensor;

namespace {

// x·Wᵀ + b in f64 with plain loops.
std::vector<double> reference_linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const auto xv = host_values(x), wv = host_values(weight);
  const auto bv = bias.defined() ? host_values(bias) : std::vector<double>(static_cast<size_t>(weight.size(0)), 0.0);
  const int64_t d_in = weight.size(1), d_out = weight.size(0), rows = x.numel() / d_in;
  std::vector<double> out(static_cast<size_t>(rows * d_out));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t o = 0; o < d_out; ++o) {
      double sum = bv[static_cast<size_t>(o)];
      for (int64_t k = 0; k < d_in; ++k)
        sum += xv[static_cast<size_t>(i * d_in + k)] * wv[static_cast<size_t>(o * d_in + k)];
      out[static_cast<size_t>(i * d_out + o)] = sum;
    }
  return out;
}

Tensor leaf(const Shape& shape, uint64_t seed, DType dtype = DType::f32) {
  Tensor t = random_tensor(shape, seed, -2, 2, dtype);
  t.set_requires_grad(true);
  return t;
}

// dW = dYᵀ·X and db = Σ_rows dY of a linear in f64 with plain loops, for dY [..., D_out] and
// X [..., D_in].
std::pair<std::vector<double>, std::vector<double>> reference_parameter_grads(const Tensor& g, const Tensor& x) {
  const auto gv = host_values(g), xv = host_values(x);
  const int64_t d_out = g.size(-1), d_in = x.size(-1), rows = x.numel() / d_in;
  std::vector<double> dw(static_cast<size_t>(d_out * d_in), 0.0), db(static_cast<size_t>(d_out), 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t o = 0; o < d_out; ++o) {
      const double gi = gv[static_cast<size_t>(i * d_out + o)];
      db[static_cast<size_t>(o)] += gi;
      for (int64_t k = 0; k < d_in; ++k) dw[static_cast<size_t>(o * d_in + k)] += gi * xv[static_cast<size_t>(i * d_in + k)];
    }
  return {dw, db};
}

// dW = dYᵀ·X of a linear over [..., D] rows, computed by the GEMM into f32 (the mixed path's
// own kernel on the same rows).
Tensor linear_weight_grad_reference(const Tensor& g, const Tensor& x) {
  const Tensor g_rows = g.detach().raw_reshape({g.numel() / g.size(-1), g.size(-1)});
  const Tensor x_rows = x.detach().raw_reshape({x.numel() / x.size(-1), x.size(-1)});
  return gemm(g_rows, true, x_rows, false, Tensor(), DType::f32);
}


}  // namespace

TEST_CASE("linear matches f64 references: 1-D to 3-D inputs, odd sizes, with and without bias") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{5, 4}, {3, 4}},   {{2, 3, 4}, {3, 4}},   {{4}, {3, 4}},
      {{1, 1, 4}, {1, 4}}, {{33, 17}, {13, 17}}, {{2, 7, 1}, {5, 1}}};
  uint64_t seed = 300;
  for (const auto& [sx, sw] : cases) {
    CAPTURE(sx.str());
    CAPTURE(sw.str());
    const Tensor x = random_tensor(sx, seed++), w = random_tensor(sw, seed++), b = random_tensor({sw[0]}, seed++);
    Shape expected = sx;
    expected[expected.ndim() - 1] = sw[0];
    for (const Tensor& bias : {b, Tensor()}) {
      CAPTURE(bias.defined());
      const Tensor y = linear(x, w, bias);
      REQUIRE(y.shape() == expected);
      const auto reference = reference_linear(x, w, bias);
      CHECK(test::relative_error(host_values(y), reference) < 1e-6);
      const Tensor y64 = linear(x.to(DType::f64), w.to(DType::f64), bias.defined() ? bias.to(DType::f64) : Tensor());
      CHECK(test::relative_error(host_values(y64), reference) < 1e-13);
      const Tensor xh = x.to(DType::bf16), wh = w.to(DType::bf16);
      const Tensor bh = bias.defined() ? bias.to(DType::bf16) : Tensor();
      CHECK(test::relative_error(host_values(linear(xh, wh, bh)), reference_linear(xh, wh, bh)) < 1e-2);
    }
  }
}

TEST_CASE("linear on a strided input and with empty dims") {
  const Tensor base = random_tensor({6, 5}, 320);
  const Tensor x = base.raw_transpose(0, 1);  // [5, 6], not contiguous
  const Tensor w = random_tensor({3, 6}, 321), b = random_tensor({3}, 322);
  CHECK(test::relative_error(host_values(linear(x, w, b)), reference_linear(x, w, b)) < 1e-6);
  CHECK(linear(zeros({0, 6}), w, b).shape() == Shape{0, 3});
  // No input features: the output is the bias on every row.
  const auto y = host_values(linear(zeros({2, 0}), zeros({3, 0}), b));
  const auto bv = host_values(b);
  CHECK(y == std::vector<double>{bv[0], bv[1], bv[2], bv[0], bv[1], bv[2]});
}

TEST_CASE("gradcheck: linear with and without bias, 2-D and 3-D input") {
  uint64_t seed = 330;
  for (const Shape& sx : {Shape{5, 4}, Shape{2, 3, 4}, Shape{4}}) {
    for (bool with_bias : {true, false}) {
      CAPTURE(sx.str());
      CAPTURE(with_bias);
      const Tensor x = leaf(sx, seed++, DType::f64), w = leaf({3, 4}, seed++, DType::f64);
      const Tensor b = with_bias ? leaf({3}, seed++, DType::f64) : Tensor();
      std::vector<Tensor> inputs{x, w};
      if (with_bias) inputs.push_back(b);
      const auto fn = [&](const std::vector<Tensor>& in) { return linear(in[0], in[1], with_bias ? in[2] : Tensor()); };
      const auto all = gradcheck(fn, inputs);
      CHECK_MESSAGE(all.ok, all.message);
      x.set_requires_grad(false);  // weight and bias only: dW through the strategy, db exact
      const auto params = gradcheck(fn, inputs);
      CHECK_MESSAGE(params.ok, params.message);
      x.set_requires_grad(true);
      w.set_requires_grad(false);  // input only: dX = dY·W
      const auto input = gradcheck(fn, inputs);
      CHECK_MESSAGE(input.ok, input.message);
    }
  }
}

TEST_CASE("linear saves X only through the strategy and only when the weight needs a gradient") {
  Tensor x = random_tensor({4, 10, 8}, 340);
  const Tensor w = leaf({6, 8}, 341), b = leaf({6}, 342);
  const size_t x_bytes = x.storage()->nbytes();
  Tensor y = linear(x, w, b);
  CHECK(y.grad_fn()->name() == "LinearBackward");
  CHECK(y.grad_fn()->saved_bytes() == x_bytes);  // exact: X itself, shared with the forward
  x.set_requires_grad(true);
  w.set_requires_grad(false);
  y = linear(x, w, b);
  CHECK(y.grad_fn()->saved_bytes() == 0);  // dX needs W only, which is a parameter
  backward(y, ones(y.shape()));
  CHECK(x.grad().defined());
  CHECK(b.grad().defined());
  CHECK_FALSE(w.grad().defined());

  test::RecordingStrategy strategy;
  strategy.reported_bytes = 1234;
  w.set_requires_grad(true);
  y = linear(x, w, b, &strategy);
  REQUIRE(strategy.saved.size() == 1);
  CHECK(strategy.saved[0] == Shape{1, 40, 8});  // X as [1, N, D_in]
  CHECK(y.grad_fn()->saved_bytes() == 1234);    // whatever the strategy reports
  const Tensor g = random_tensor(y.shape(), 343);
  w.set_grad(Tensor());
  b.set_grad(Tensor());
  backward(y, g);
  REQUIRE(strategy.contracted.size() == 1);
  CHECK(strategy.contracted[0] == Shape{1, 40, 6});  // dY as [1, N, D_out]
  CHECK(y.grad_fn()->saved_bytes() == 0);
  // dW = dYᵀ·X and db = Σ dY against loops.
  const auto [dw, db] = reference_parameter_grads(g, x);
  CHECK(test::relative_error(host_values(w.grad()), dw) < 1e-6);
  CHECK(test::relative_error(host_values(b.grad()), db) < 1e-6);
}

TEST_CASE("mixed precision: a bf16 input with f32 parameters gives bf16 outputs and f32 parameter gradients") {
  const DType bf = DType::bf16, f32 = DType::f32;
  const Tensor x = leaf({3, 7, 8}, 344, bf), w = leaf({6, 8}, 345), b = leaf({6}, 346);
  // The same computation with the parameters rounded by hand: bf16 copies as leaves.
  const Tensor w16 = leaf({6, 8}, 0, bf), b16 = leaf({6}, 0, bf), x16 = leaf({3, 7, 8}, 0, bf);
  w16.detach().copy_(w.detach());
  b16.detach().copy_(b.detach());
  x16.detach().copy_(x.detach());
  const Tensor y = linear(x, w, b), y16 = linear(x16, w16, b16);
  CHECK(y.dtype() == bf);
  CHECK(host_values(y) == host_values(y16));  // the forward is the bf16 GEMM on the rounded parameters
  const Tensor g = random_tensor(y.shape(), 347, -1, 1, bf);
  backward(y, g);
  backward(y16, g);
  CHECK(x.grad().dtype() == bf);
  CHECK(host_values(x.grad()) == host_values(x16.grad()));
  REQUIRE(w.grad().dtype() == f32);
  REQUIRE(b.grad().dtype() == f32);
  // dW and db are f32 sums of the bf16 products, unrounded: against f64 loops within f32 rounding,
  // closer than the bf16 path's rounded gradients.
  const auto [dw, db] = reference_parameter_grads(g, x);
  CHECK(test::relative_error(host_values(w.grad()), dw) < 1e-6);
  CHECK(test::relative_error(host_values(b.grad()), db) < 1e-6);
  CHECK(test::relative_error(host_values(w16.grad()), dw) > 1e-6);
  CHECK(test::relative_error(host_values(w16.grad()), dw) < 1e-2);

  // Through a strategy the gradients come back in f32 too, and db without dW as well.
  test::RecordingStrategy strategy;
  w.set_grad(Tensor());
  b.set_grad(Tensor());
  backward(linear(x, w, b, &strategy), g);
  CHECK(strategy.contracted.size() == 1);
  CHECK(host_values(w.grad()) == host_values(linear_weight_grad_reference(g, x)));
  w.set_requires_grad(false);
  b.set_grad(Tensor());
  backward(linear(x, w, b), g);
  CHECK(b.grad().dtype() == f32);
  CHECK(test::relative_error(host_values(b.grad()), db) < 1e-6);
}

TEST_CASE("linear errors say what was expected") {
  const Tensor w = zeros({3, 4});
  CHECK_THROWS_WITH_AS(linear(zeros({2, 5}), w),
                       "linear: input has 5 features (shape [2, 5]) but weight expects 4 (shape [3, 4])", ShapeError);
  CHECK_THROWS_WITH_AS(linear(zeros({2, 4}), zeros({4})),
                       "linear: weight must be 2-D [out_features, in_features], got shape [4]", ShapeError);
  CHECK_THROWS_WITH_AS(linear(zeros({2, 4}), w, zeros({4})),
                       "linear: bias must have shape [3] (out_features of weight [3, 4]), got [4]", ShapeError);
  CHECK_THROWS_WITH_AS(linear(zeros({}), w), "linear: input must be [..., in_features], got a 0-d tensor", ShapeError);
  CHECK_THROWS_WITH_AS(linear(zeros({2, 4}), zeros({3, 4}, DType::f64)),
                       "linear: expected the weight in f32 like the input, got f64", TypeError);
  CHECK_THROWS_WITH_AS(linear(zeros({2, 4}, DType::bf16), zeros({3, 4}, DType::f64)),
                       "linear: expected the weight in bf16 or f32 (mixed precision) like the input, got f64", TypeError);
  CHECK_THROWS_WITH_AS(linear(zeros({2, 4}, DType::bf16), zeros({3, 4}), zeros({3}, DType::bf16)),
                       "linear: expected all tensors of dtype f32, got bf16", TypeError);
  CHECK_THROWS_WITH_AS(linear(zeros({2, 4}, DType::i64), zeros({3, 4}, DType::i64)),
                       "linear: expected a floating dtype, got i64", TypeError);
}
