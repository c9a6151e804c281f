// The non-recording GEMM of the matmul family: op(a)·op(b) with matmul's shape checks, the
// operands arranged for BLAS (strided views read in place), an optional fused bias, in the
// precision the thread's PrecisionPolicy (ops/precision.h) gives. The recording ops (matmul,
// linear, linear_gelu), their backward nodes and the backward strategies all multiply through
// here: it is the one entry that reads the policy.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace tg {

// The shapes of R = op(a)·op(b): a is [..., M, K] ([..., K, M] with trans_a), b is [..., K, N]
// ([..., N, K] with trans_b), identical leading (batch) dims, R is [..., M, N].
struct MatmulShape {
  Shape batch_dims;  // the leading dims shared by a, b and the result
  int64_t batch, m, k, n;
};

// Checks the operands of op(a)·op(b) (same device and floating dtype, at least 2 dims, equal
// inner and batch dims) and returns the shapes; ShapeError/TypeError naming what differs.
MatmulShape check_matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b);

// op(a)·op(b), plus `bias` [N] on every row when defined (fused into the GEMM). bf16 operands
// accumulate in f32. Records no node: for forward passes of the recording ops, backward nodes
// and strategies.
Tensor gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias = Tensor());

}  // namespace tg
