// linear_gelu: the same values and gradients as gelu(linear(.)), keeping only the input.
#include <doctest/doctest.h>

#include "autograd/gradcheck.h"
#include "ops/matmul/linear.h"
#include "ops/matmul/linear_gelu.h"
#include "tests/support/op_checks.h"

using namespace tg;

TEST_CASE("linear_gelu equals gelu(linear(x)) in value and gradient") {
  for (GeluApproximation approximation : {GeluApproximation::none, GeluApproximation::tanh}) {
    Tensor x = test::random_tensor({2, 5, 6}, 1, -1, 1, DType::f64), w = test::random_tensor({9, 6}, 2, -1, 1, DType::f64),
           b = test::random_tensor({9}, 3, -1, 1, DType::f64);
    for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
    const Tensor fused = linear_gelu(x, w, b, approximation);
    CHECK(fused.shape() == Shape{2, 5, 9});
    CHECK(test::relative_error(test::host_values(fused), test::host_values(gelu(linear(x, w, b), approximation))) < 1e-14);
    const auto check = gradcheck([&](const std::vector<Tensor>& in) { return linear_gelu(in[0], in[1], in[2], approximation); },
                                 {x, w, b});
    CHECK_MESSAGE(check.ok, check.message);
  }
  Tensor x = test::random_tensor({4, 6}, 4, -1, 1, DType::f64), w = test::random_tensor({9, 6}, 5, -1, 1, DType::f64);
  w.set_requires_grad(true);
  const auto no_bias = gradcheck([&](const std::vector<Tensor>& in) { return linear_gelu(x, in[0]); }, {w});
  CHECK_MESSAGE(no_bias.ok, no_bias.message);
}

TEST_CASE("linear_gelu keeps the D-wide input instead of the 4D-wide pre-activation") {
  Tensor x = test::random_tensor({256, 64}, 6), w = test::random_tensor({256, 64}, 7), b = zeros({256});
  for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
  const Tensor y = linear_gelu(x, w, b);
  CHECK(y.grad_fn()->saved_bytes() == x.nbytes());
  const Tensor unfused = gelu(linear(x, w, b));
  CHECK(unfused.grad_fn()->saved_bytes() == 4 * x.nbytes());  // gelu keeps the [256, 256] pre-activation
  CHECK_THROWS_WITH_AS(linear_gelu(x, zeros({3, 5})), "linear_gelu: input has 64 features (shape [256, 64]) but weight expects 5 (shape [3, 5])",
                       ShapeError);
}
