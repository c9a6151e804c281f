// Elementwise ops with autograd: broadcasting binary arithmetic (NumPy rules: trailing dims
// align, size-1 dims stretch), tensor-scalar arithmetic, and unary functions. Floating dtypes.
#pragma once

#include "core/tensor.h"

namespace tg {

// The shape two operands broadcast to; ShapeError naming `op` and both shapes otherwise.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

Tensor add(const Tensor& a, const Tensor& b);
// a + b with b converted to a's dtype on the way (a residual stream in f32 plus a bf16 branch):
// bit for bit add(a, cast(b, a.dtype())), in one pass instead of two; its backward hands b the
// gradient in b's dtype, as cast's does. Other shapes or equal dtypes take that composition.
Tensor add_converted(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);

// y = scale * x + shift, the form behind every tensor-scalar op.
Tensor affine(const Tensor& x, double scale, double shift);
inline Tensor add(const Tensor& a, double s) { return affine(a, 1, s); }
inline Tensor sub(const Tensor& a, double s) { return affine(a, 1, -s); }
inline Tensor mul(const Tensor& a, double s) { return affine(a, s, 0); }
inline Tensor div(const Tensor& a, double s) { return affine(a, 1 / s, 0); }
inline Tensor neg(const Tensor& a) { return affine(a, -1, 0); }

Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor relu(const Tensor& x);
enum class GeluApproximation { none, tanh };  // none: the exact erf form (PyTorch's default)
Tensor gelu(const Tensor& x, GeluApproximation approximation = GeluApproximation::none);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return div(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return affine(a, -1, s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

}  // namespace tg
