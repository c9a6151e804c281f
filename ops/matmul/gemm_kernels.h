// Kernel entry points of the GEMM (ops/matmul/cpu/gemm.cpp, ops/matmul/cuda/gemm.cpp): batched
// GEMM in BLAS's terms. Every operand is a 3-D [batch, rows, cols] tensor whose rows are
// unit-stride (stride(2) == 1, row stride stride(1) >= cols, any batch stride including 0),
// used as op(X) = trans ? Xᵀ : X; the output is a contiguous [batch, M, N] tensor allocated by
// the caller, in the operands' dtype or, for bf16 operands, f32 (the f32 accumulator stored
// unrounded). All sizes are positive (the caller handles empty products). bf16 accumulates in
// f32. The kernels read no global state: what the precision policy decides arrives as GemmMath.
#pragma once

#include "core/tensor.h"

namespace tg {

// How a GEMM may compute: what the PrecisionPolicy (ops/precision.h) allows, which cuBLAS API
// runs a plain GEMM (CudaGemmBackend) and how cuBLASLt picks its algorithm (ops/matmul/gemm.h).
struct GemmMath {
  bool allow_tf32 = false;  // TF32 tensor cores for f32 operands (CUDA only)
  bool cublaslt = false;    // plain GEMMs through cuBLASLt's matmul (CUDA only)
  bool autotune = false;    // cuBLASLt's algorithm by timing its candidates (CUDA only)
  int sm_margin = 0;        // SMs the GEMMs leave to concurrent work (CUDA only; 0: all SMs)
};

namespace cpu {
// C[b] = op(A[b])·op(B[b]), plus the previous C[b] when `accumulate`. The CPU has no TF32.
void gemm(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, bool accumulate, GemmMath math);
// C[b] = op(A[b])·op(B[b]) + bias, with bias [N] added to every row.
void gemm_bias(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias,
               GemmMath math);
// The CPU has no GEMM epilogue that sums rows: false, and the caller forms them apart.
inline bool gemm_row_sums(const Tensor&, const Tensor&, bool, const Tensor&, bool, const Tensor&, GemmMath) {
  return false;
}
}  // namespace cpu
#if TG_WITH_CUDA
namespace cuda {
void gemm(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, bool accumulate, GemmMath math);
void gemm_bias(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias,
               GemmMath math);
// C = op(A)·op(B) for one matrix (batch 1) and row_sums[m] = Σ_k op(A)[m, k] ([M], C's dtype),
// formed by the GEMM's epilogue (cuBLASLt's BGRADB): a linear's weight and bias gradients in one
// pass over dY. False when cuBLASLt has no algorithm for the case (nothing was enqueued then).
bool gemm_row_sums(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                   const Tensor& row_sums, GemmMath math);
}  // namespace cuda
#endif
}  // namespace tg
