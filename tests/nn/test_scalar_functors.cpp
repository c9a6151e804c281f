// The scalar functors shared by CPU and CUDA kernels, compiled after the op headers: with
// tg::exp(const Tensor&), tg::log, tg::sqrt and tg::tanh declared first, an unqualified scalar
// call inside namespace tg would find the Tensor overloads and fail to compile. This file
// includes every op header before the functor headers and instantiates every functor for f32
// and f64, checking each against <cmath> as core/scalar_math.h documents it: on the host a
// float argument is evaluated in double and the expression stays in double until it returns.
#include <doctest/doctest.h>

#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/layer_norm.h"
#include "ops/loss.h"
#include "ops/matmul/linear.h"
#include "ops/matmul/linear_gelu.h"
#include "ops/matmul/matmul.h"
#include "ops/reduce.h"
#include "ops/shape_ops.h"
#include "ops/softmax.h"
#include "nn/optim.h"
// The functor headers come last on purpose (see above).
#include "nn/optim_update.h"
#include "ops/elementwise_functors.h"
#include "ops/softmax_functors.h"

#include <cmath>

using namespace tg;

namespace {

template <class T>
void check_unary_functors() {
  // Values where float's own functions and the rounded double ones disagree, for T = float.
  for (const T x : {static_cast<T>(0.7), static_cast<T>(-3.2109375), static_cast<T>(4.0390625)}) {
    const auto wide = static_cast<double>(x);
    CHECK(unary_apply(UnaryOp::exp, x, T(0), T(0)) == static_cast<T>(std::exp(wide)));
    CHECK(unary_apply(UnaryOp::log, std::abs(x), T(0), T(0)) == static_cast<T>(std::log(std::abs(wide))));
    CHECK(unary_apply(UnaryOp::sqrt, std::abs(x), T(0), T(0)) == static_cast<T>(std::sqrt(std::abs(wide))));
    CHECK(unary_apply(UnaryOp::tanh, x, T(0), T(0)) == static_cast<T>(std::tanh(wide)));
    const auto half_x = static_cast<double>(static_cast<T>(0.5) * x);
    const auto scaled = static_cast<double>(x * static_cast<T>(0.7071067811865476));
    CHECK(unary_apply(UnaryOp::gelu_erf, x, T(0), T(0)) == static_cast<T>(half_x * (1.0 + std::erf(scaled))));
  }
  const T x = static_cast<T>(0.7);
  CHECK(unary_apply(UnaryOp::affine, x, T(2), T(1)) == T(2) * x + T(1));
  CHECK(unary_apply(UnaryOp::relu, -x, T(0), T(0)) == T(0));
  CHECK(std::abs(unary_apply(UnaryOp::gelu_tanh, x, T(0), T(0)) - unary_apply(UnaryOp::gelu_erf, x, T(0), T(0))) <
        T(1e-3));
  for (UnaryOp op : {UnaryOp::affine, UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt, UnaryOp::tanh, UnaryOp::relu,
                     UnaryOp::gelu_erf, UnaryOp::gelu_tanh}) {
    CAPTURE(static_cast<int>(op));
    const T s = unary_backward_uses_input(op) ? x : unary_apply(op, x, T(1), T(0));
    CHECK(std::isfinite(static_cast<double>(unary_backward(op, T(1), s, T(1)))));
  }
  for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div})
    CHECK(std::isfinite(static_cast<double>(binary_apply(op, x, T(2)))));
}

template <class A>
void check_softmax_and_optimizer_functors() {
  MaxSum<A> a = MaxSum<A>::empty();
  a.add(A(1));
  a.add(A(3));
  CHECK(std::abs(a.log_sum_exp() - std::log(std::exp(A(1)) + std::exp(A(3)))) < A(1e-6));
  MaxSum<A> b = MaxSum<A>::empty();
  b.add(A(2));
  const MaxSum<A> c = combine(a, b);
  CHECK(std::abs(c.log_sum_exp() - std::log(std::exp(A(1)) + std::exp(A(2)) + std::exp(A(3)))) < A(1e-6));

  A p = A(1), m = A(0), v = A(0);
  const nn::StepScalars adam_step{0.1, 0.1, std::sqrt(0.001), 0};
  nn::adam_element(p, A(0.5), m, v, nn::AdamScalars{0.9, 0.999, 1e-8, 0.0, true, &adam_step}, adam_step);
  CHECK(std::abs(p - A(0.9)) < A(1e-5));  // the first Adam step moves by lr (m/sqrt(v) = sign(g))
  A q = A(1), buffer = A(0);
  const nn::StepScalars sgd_step{0.1, 1, 1, 1};
  nn::sgd_element(q, A(0.5), buffer, nn::SgdScalars{0.9, 0.0, 0.0, false, &sgd_step}, sgd_step);
  CHECK(q == A(1) - A(0.1) * A(0.5));
}

}  // namespace

TEST_CASE("scalar functors compile after the op headers and equal the <cmath> functions") {
  check_unary_functors<float>();
  check_unary_functors<double>();
  check_softmax_and_optimizer_functors<float>();
  check_softmax_and_optimizer_functors<double>();
}
