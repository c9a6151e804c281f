// Layer normalization over the last dim, with autograd: y = (x - mean) * rstd * weight + bias,
// rstd = 1 / sqrt(var + eps) (biased variance). weight and bias ([D]) may each be undefined.
#pragma once

#include "core/tensor.h"

namespace tg {

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// The same with y in `out_dtype`: x's dtype, or bf16 for an f32 x — the normalization in f32,
// rounded once on the way out, so that a bf16 matmul after it needs no cast pass (autocast; the
// result equals layer_norm(...) cast to bf16 bit for bit, and so do the gradients).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, DType out_dtype);

}  // namespace tg
