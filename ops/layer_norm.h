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

// The pieces, for ops that fuse a norm with what follows it (ops/matmul/norm_linear.h): the
// forward without recording, with the per-row statistics backward uses ([rows], f32; f64 for
// f64), and the gradients from them (each only when asked for).
struct LayerNormResult {
  Tensor y, mean, rstd;
};
LayerNormResult layer_norm_unrecorded(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                      DType out_dtype);
struct LayerNormGrads {
  Tensor x, weight, bias;
};
// With `x_grad_sum` defined (contiguous, x's shape, dtype and device, writable), the input
// gradient is added into it in place and returned as .x (a node's backward adding into the
// engine's pending sum: autograd/pending_grad.h); `input` must then be true.
LayerNormGrads layer_norm_gradients(const Tensor& grad_y, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                                    const Tensor& weight, bool input, bool affine_weight, bool affine_bias,
                                    const Tensor& x_grad_sum = Tensor());

}  // namespace tg
