// The non-recording GEMM of the matmul family: op(a)·op(b) with matmul's shape checks, the
// operands arranged for BLAS (strided views read in place), an optional fused bias, in the
// precision the thread's PrecisionPolicy (ops/precision.h) gives. The recording ops (matmul,
// linear, linear_gelu), their backward nodes and the backward strategies all multiply through
// here: it is the one entry that reads the policy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

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
// accumulate in f32. The result is in `out_dtype`: the operands' dtype (nullopt) or, for bf16
// operands without a bias, f32 — the f32 accumulator stored unrounded (mixed precision's
// gradients of f32 parameters). Records no node: for forward passes of the recording ops,
// backward nodes and strategies.
Tensor gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias = Tensor(),
            std::optional<DType> out_dtype = std::nullopt);

// gemm() without a bias into `out` — contiguous, of the product's shape, in a's dtype (or f32 for
// bf16 operands) — instead of a new tensor: for callers that assemble one result from several
// products (gemm_attention's chunks).
void gemm_into(const Tensor& out, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b);

// Which cuBLAS API runs the plain GEMMs (no bias, no row sums) on CUDA, process-wide. cublas:
// cublasGemmStridedBatchedEx. cublaslt: cuBLASLt's matmul with the algorithm its heuristic picks,
// planned once per shape like the epilogue GEMMs (falling back to cuBLAS where it has none).
// automatic: cuBLASLt for f32 operands, where cuBLAS's heuristic picks Ampere-generation TF32
// kernels on Hopper, and cuBLAS for bf16 (docs/results.md, device call 14).
enum class CudaGemmBackend { automatic, cublas, cublaslt };
void set_cuda_gemm_backend(CudaGemmBackend backend);
CudaGemmBackend cuda_gemm_backend();
// "auto", "cublas", "cublaslt" (bench_vit's --gemm-backend); ValueError otherwise.
CudaGemmBackend parse_cuda_gemm_backend(const std::string& name);

// Whether cuBLASLt's GEMMs on CUDA pick their algorithm by timing, process-wide: off (the
// default), the first algorithm of cuBLASLt's heuristic; on, the fastest of its first few
// candidates, timed once per shape on the first eager call (never inside a CUDA graph capture,
// never for an accumulating GEMM, whose output the timing would overwrite). Plain GEMMs then go
// through cuBLASLt whatever the backend. Like cuDNN's benchmark mode, two processes may pick
// different algorithms, so their results may differ in the last bits (within a process, the
// choice is fixed once made).
void set_cuda_gemm_autotune(bool on);
bool cuda_gemm_autotune();

// How many SMs the GEMMs on CUDA leave free for concurrent work, process-wide (cuBLAS's SM count
// target and cuBLASLt's CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET; 0: all SMs). A GEMM whose blocks
// meet SMs held by long one-block kernels of other streams (the sampler's selections) waits for
// them; a margin keeps SMs for such work. kAutomaticSmMargin (the default): one SM per side lane
// (core/side_work.h) once side work has run in the process, else 0 — measured on the H200, a
// margin of 4 takes WTA-CRS ρ 0.3 on ViT-S/4 from 1.153× to 1.109× the exact step and costs an
// exact step 5% (docs/results.md, device call 28). ValueError outside [0, 64] and automatic.
inline constexpr int kAutomaticSmMargin = -1;
void set_cuda_gemm_sm_margin(int sms);
int cuda_gemm_sm_margin();  // the setting (kAutomaticSmMargin or a count)

// How a linear's bias gradient (the row sums of gemm_with_row_sums) is formed on CUDA,
// process-wide. epilogue: cuBLASLt's BGRADB epilogue of the weight-gradient GEMM, which on the
// H200 runs as a separate reduction kernel and restricts TF32 GEMMs to Ampere-generation
// kernels. column_sums: the plain GEMM and tapegrad's column-sum kernel. automatic: the column
// sums, 1–3% faster per ViT step in both bf16 and TF32 (docs/results.md, device call 16).
enum class CudaBiasGradient { automatic, epilogue, column_sums };
void set_cuda_bias_gradient(CudaBiasGradient how);
CudaBiasGradient cuda_bias_gradient();
// "auto", "epilogue", "column-sums" (bench_vit's --bias-gradient); ValueError otherwise.
CudaBiasGradient parse_cuda_bias_gradient(const std::string& name);

struct ProductAndRowSums {
  Tensor product;   // op(a)·op(b) [M, N]
  Tensor row_sums;  // Σ_k op(a)[m, k], [M]
};

// For 2-D a and b: op(a)·op(b) and the sums of op(a)'s rows, both in `out_dtype` (as for gemm):
// a linear's weight gradient dW = dYᵀ·X with its bias gradient db = Σ_rows dY (a = dY, trans_a).
// One GEMM whose epilogue forms the sums while it reads a, where the device has one (cuBLASLt's
// BGRADB on CUDA) and CudaBiasGradient asks for it; else the GEMM and a column sum. The sums
// accumulate in f32.
ProductAndRowSums gemm_with_row_sums(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                                     std::optional<DType> out_dtype = std::nullopt);

}  // namespace tg
