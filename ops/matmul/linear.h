// linear: Y = X·Wᵀ + b with autograd (PyTorch's layout: weight [out_features, in_features]).
#pragma once

#include <optional>

#include "core/tensor.h"
#include "ops/matmul/strategy.h"

namespace tg {

// x [..., D_in], weight [D_out, D_in], bias [D_out] or undefined; returns [..., D_out]. The bias
// is fused into the GEMM. Backward: dX = dY·W and db = Σ_rows dY exactly; dW = dYᵀ·X through
// `strategy` (exact when null; it must outlive the backward of this call), which alone keeps X,
// and only when the weight needs a gradient. With the exact strategy, db comes out of dW's GEMM
// (its epilogue sums dY's rows as it reads them; ops/matmul/gemm.h).
//
// Mixed precision: a bf16 x with f32 weight and bias (PyTorch autocast's master weights) runs
// the GEMMs on bf16 copies of the parameters, made inside the op, and returns the parameters'
// gradients in f32 straight from the GEMM's f32 accumulator: no cast nodes, no cast passes.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              BackwardStrategy* strategy = nullptr);

// For the linear family's ops (linear, linear_gelu, norm_linear): the weight and bias as their
// GEMMs use them, and the dtype their gradients return in.
struct LinearParameters {
  Tensor weight, bias;                  // in x's dtype (bf16 copies under mixed precision)
  std::optional<DType> gradient_dtype;  // f32 under mixed precision; nullopt: the GEMMs' dtype
};
// Checks that weight and bias share x's device and that their dtype is x's or, for a bf16 x, f32
// (mixed precision; TypeError naming `op` otherwise), and rounds them to x's dtype when it
// differs. Records nothing: the op's own node returns the parameters' gradients.
LinearParameters linear_parameters(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias);

}  // namespace tg
