// Matrix products with autograd: matmul (batched, optional transposes, pluggable backward
// strategy), the non-recording GEMM that matmul, linear and the backward strategies share, and
// the TF32 switch for f32 GEMMs on CUDA.
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

// op(a)·op(b) with matmul's shapes and checks, plus `bias` [N] on every row when defined (fused
// into the GEMM). For backward functions and strategies: it records no node.
Tensor gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias = Tensor());

// Lets f32 GEMMs on CUDA use TF32 tensor cores (10-bit mantissa inputs, f32 accumulation).
// Off by default, so f32 products are full f32 unless a caller opts in. Process-wide.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace tg
