// linear_gelu: GELU(X·Wᵀ + b) as one node that keeps X and recomputes the pre-activation in
// backward instead of keeping it. The pre-activation of a transformer MLP is 4D wide while X is
// D wide, so this trades one extra GEMM for 3D fewer saved values per token (WTACRS.md §5: a
// GELU that saves its input keeps fc1's output alive whatever the strategies do).
#pragma once

#include "core/tensor.h"
#include "ops/elementwise.h"

namespace tg {

// x [..., D_in], weight [H, D_in], bias [H] or undefined -> [..., H]. All gradients are exact; db
// comes out of dW's GEMM. A bf16 x with f32 weight and bias runs in mixed precision as linear does
// (ops/matmul/linear.h).
Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                   GeluApproximation approximation = GeluApproximation::none);

}  // namespace tg
