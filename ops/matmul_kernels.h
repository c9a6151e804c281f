// Kernel entry points of the matmul family (ops/cpu/matmul.cpp, ops/cuda/matmul.cpp): batched
// GEMM in BLAS's terms. Every operand is a 3-D [batch, rows, cols] tensor whose rows are
// unit-stride (stride(2) == 1, row stride stride(1) >= cols, any batch stride including 0),
// used as op(X) = trans ? Xᵀ : X; the output is a contiguous [batch, M, N] tensor allocated by
// the caller. All sizes are positive (the caller handles empty products). bf16 accumulates in
// f32.
#pragma once

#include "core/tensor.h"

namespace tg {
namespace cpu {
// C[b] = op(A[b])·op(B[b]), plus the previous C[b] when `accumulate`.
void gemm(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, bool accumulate);
// C[b] = op(A[b])·op(B[b]) + bias, with bias [N] added to every row.
void gemm_bias(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias);
}  // namespace cpu
#if TG_WITH_CUDA
namespace cuda {
void gemm(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, bool accumulate);
void gemm_bias(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias);
}  // namespace cuda
#endif
}  // namespace tg
