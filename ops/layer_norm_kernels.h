// Kernel entry points of the layer_norm family (ops/cpu/layer_norm.cpp, ops/cuda/layer_norm.cu).
// x, y and their gradients are contiguous and viewed as [rows, cols]; mean and rstd are [rows]
// in f32 (f64 for f64 inputs); weight and bias are [cols] and may be undefined, as may each
// gradient output (then it is not computed). Outputs are allocated by the caller. y and grad_y
// have x's dtype, or bf16 for an f32 x (the output in the autocast dtype, rounded once from the
// f32 result); everything else has x's dtype. With `accumulate`, grad_x holds a gradient sum on
// entry and the input gradient is added into it: each element becomes grad_x + g, g rounded to
// x's dtype first (the autograd engine's sum, fused: autograd/pending_grad.h).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace tg {
namespace cpu {
void layer_norm(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                const Tensor& bias, int64_t cols, double eps);
// grad_weight and grad_bias are sums over rows, in a fixed order.
void layer_norm_backward(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias,
                         const Tensor& grad_y, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, int64_t cols, bool accumulate);
}  // namespace cpu
#if TG_WITH_CUDA
namespace cuda {
void layer_norm(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                const Tensor& bias, int64_t cols, double eps);
void layer_norm_backward(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias,
                         const Tensor& grad_y, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, int64_t cols, bool accumulate);
}  // namespace cuda
#endif
}  // namespace tg
