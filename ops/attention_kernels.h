// Kernel entry points of fused attention (ops/cpu/attention.cpp, ops/cuda/attention.cu). Every
// [B, H, T, D] tensor may have any strides in B, H and T but a contiguous last dim; outputs are
// allocated by the caller. lse is contiguous [B, H, Tq], f32 (f64 for f64 inputs). `allow_tf32`
// (the precision policy's, when forward ran) lets f32 tile products use TF32 tensor cores; the
// CPU has no TF32 and ignores it.
#pragma once

#include "core/tensor.h"

namespace tg {
namespace cpu {
// out = softmax(q·kᵀ·scale)·v; lse[b, h, t] = log Σ_j exp(scale · q_t·k_j).
void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       double scale, bool allow_tf32);
// grad_q, grad_k, grad_v from grad_out and what forward kept.
void attention_backward(const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v, const Tensor& grad_out,
                        const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        double scale, bool allow_tf32);
}  // namespace cpu
#if TG_WITH_CUDA
namespace cuda {
void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       double scale, bool allow_tf32);
void attention_backward(const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v, const Tensor& grad_out,
                        const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        double scale, bool allow_tf32);
}  // namespace cuda
#endif
}  // namespace tg
