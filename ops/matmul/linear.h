// linear: Y = X·Wᵀ + b with autograd (PyTorch's layout: weight [out_features, in_features]).
#pragma once

#include "core/tensor.h"
#include "ops/matmul/strategy.h"

namespace tg {

// x [..., D_in], weight [D_out, D_in], bias [D_out] or undefined; returns [..., D_out]. The bias
// is fused into the GEMM. Backward: dX = dY·W and db = Σ_rows dY exactly; dW = dYᵀ·X through
// `strategy` (exact when null; it must outlive the backward of this call), which alone keeps X,
// and only when the weight needs a gradient.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              BackwardStrategy* strategy = nullptr);

}  // namespace tg
