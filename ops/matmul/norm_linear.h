// norm_linear: linear(layer_norm(x)) as one node that recomputes the norm's output in backward
// instead of keeping it (issue 15's LayerNorm-output recomputation: a pre-norm block's qkv and
// fc1 inputs are LayerNorm outputs of the residual stream, which the norm keeps anyway).
#pragma once

#include "core/tensor.h"

namespace tg {

// y = layer_norm(x, norm_weight, norm_bias, eps, norm_dtype) (ops/layer_norm.h), returns
// linear(y, weight, bias) (ops/matmul/linear.h; weight and bias in norm_dtype, or f32 for a bf16
// norm_dtype: mixed precision, as linear takes them). Keeps x, the
// norm's row statistics and its weight, and the linear's weight — not y: backward recomputes y
// (one norm pass) for dW = dYᵀ·y. The output and every gradient equal those of the two ops
// composed, bit for bit (the same kernels in the same order). The weight gradient is exact.
Tensor norm_linear(const Tensor& x, const Tensor& norm_weight, const Tensor& norm_bias, double eps, DType norm_dtype,
                   const Tensor& weight, const Tensor& bias);

}  // namespace tg
