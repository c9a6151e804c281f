// Scalar math of the elementwise family, shared by the CPU and CUDA kernels (host/device).
// Arithmetic happens in the accumulation type (float for f32/bf16, double for f64).
#pragma once

#include <cmath>

#include "core/dtype.h"
#include "core/scalar_math.h"

namespace tg {

enum class BinaryOp : int { add, sub, mul, div };
// affine: y = p0 * x + p1 (scalar add/sub/mul/div and negation).
enum class UnaryOp : int { affine, exp, log, sqrt, tanh, relu, gelu_erf, gelu_tanh };

template <class T>
TG_HOST_DEVICE inline T binary_apply(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
  }
  return a;
}

template <class T>
TG_HOST_DEVICE inline T gelu_tanh_inner(T x) {
  const T k = static_cast<T>(0.7978845608028654);  // sqrt(2 / pi)
  return k * (x + static_cast<T>(0.044715) * x * x * x);
}

template <class T>
TG_HOST_DEVICE inline T unary_apply(UnaryOp op, T x, T p0, T p1) {
  switch (op) {
    case UnaryOp::affine: return p0 * x + p1;
    case UnaryOp::exp: return scalar::exp(x);
    case UnaryOp::log: return scalar::log(x);
    case UnaryOp::sqrt: return scalar::sqrt(x);
    case UnaryOp::tanh: return scalar::tanh(x);
    case UnaryOp::relu: return x > T(0) ? x : T(0);
    case UnaryOp::gelu_erf: return static_cast<T>(0.5) * x * (T(1) + scalar::erf(x * static_cast<T>(0.7071067811865476)));
    case UnaryOp::gelu_tanh: return static_cast<T>(0.5) * x * (T(1) + scalar::tanh(gelu_tanh_inner(x)));
  }
  return x;
}

// Whether backward of `op` needs the input x (true) or the output y (false).
TG_HOST_DEVICE inline bool unary_backward_uses_input(UnaryOp op) {
  return !(op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::tanh);
}

// dL/dx given dL/dy = g and the saved value s (x or y, see unary_backward_uses_input).
template <class T>
TG_HOST_DEVICE inline T unary_backward(UnaryOp op, T g, T s, T p0) {
  switch (op) {
    case UnaryOp::affine: return g * p0;
    case UnaryOp::exp: return g * s;
    case UnaryOp::log: return g / s;
    case UnaryOp::sqrt: return g / (T(2) * s);
    case UnaryOp::tanh: return g * (T(1) - s * s);
    case UnaryOp::relu: return s > T(0) ? g : T(0);
    case UnaryOp::gelu_erf: {
      const T cdf = static_cast<T>(0.5) * (T(1) + scalar::erf(s * static_cast<T>(0.7071067811865476)));
      const T pdf = scalar::exp(static_cast<T>(-0.5) * s * s) * static_cast<T>(0.3989422804014327);
      return g * (cdf + s * pdf);
    }
    case UnaryOp::gelu_tanh: {
      const T t = scalar::tanh(gelu_tanh_inner(s));
      const T dinner = static_cast<T>(0.7978845608028654) * (T(1) + static_cast<T>(3 * 0.044715) * s * s);
      return g * (static_cast<T>(0.5) * (T(1) + t) + static_cast<T>(0.5) * s * (T(1) - t * t) * dinner);
    }
  }
  return g;
}

}  // namespace tg
