// matmul: batched matrix products with autograd (optional transposes, a pluggable backward
// strategy per operand gradient). The non-recording product is gemm (ops/matmul/gemm.h); its
// precision comes from the PrecisionPolicy (ops/precision.h).
#pragma once

#include "core/tensor.h"
#include "ops/matmul/strategy.h"

namespace tg {

// R = op(a)·op(b): a is [..., M, K] ([..., K, M] with trans_a), b is [..., K, N] ([..., N, K]
// with trans_b), both with identical leading (batch) dims, R is [..., M, N]. Floating dtypes;
// bf16 accumulates in f32. Strided inputs such as transposed views are read in place where
// BLAS can (a transposed view becomes a transpose flag), copied otherwise.
// Backward forms dA = dR·Bᵀ and dB = Aᵀ·dR as contractions of `strategy` (strategy.h; exact
// when null), which must outlive the backward of this call. Only the operand that a needed
// gradient uses is saved: B for dA, A for dB.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false,
              BackwardStrategy* strategy = nullptr);
// The same with one strategy per gradient: `for_grad_a` keeps B (for dA = dR·Bᵀ) and
// `for_grad_b` keeps A (for dB = Aᵀ·dR). Sampling an operand only saves memory when this node
// is its last holder: attention's P·V keeps P exact because softmax holds P anyway.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, BackwardStrategy* for_grad_a,
              BackwardStrategy* for_grad_b);

}  // namespace tg
