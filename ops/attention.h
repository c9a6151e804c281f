// Fused scaled-dot-product attention: out = softmax(q·kᵀ·scale)·v per batch and head, without
// keeping the [T, T] probabilities. The tiled kernels keep q, k, v, out and each query row's
// log-sum-exp of the scaled scores, and backward recomputes the probabilities tile by tile from
// them (flash attention's scheme); gemm_attention keeps q·scale, k and v and recomputes them
// with GEMMs, chunk by chunk. The explicit path (matmul, softmax, matmul; nn::Attention with
// attention_mode explicit) stays for the sampled attention matmuls, which need the scores as a
// matmul node.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace tg {

// q, k, v [B, H, T, D] (any strides), one floating dtype; out [B, H, T, D] in that dtype, a view
// of a [B, T, H, D] buffer, so that merging the heads (transpose(1, 2), reshape [B, T, H·D]) is
// free. Accumulation is f32 (f64 for f64 inputs on the CPU). On CUDA: bf16 runs cuDNN's fused
// flash attention where the build has cuDNN and its engines accept the shapes, else tapegrad's
// tiled kernels (head dims 32 and 64, tensor cores); f32 (and f64) runs gemm_attention, whose
// cuBLAS GEMMs use TF32 when the precision policy allows it — or, with the tapegrad backend,
// tapegrad's tiled kernels (head dims 32 and 64; TF32 tensor cores when allowed, else CUDA
// cores). Other head dims there raise NotImplementedError. See CudaAttentionBackend.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale);

// The same attention from batched GEMMs and the softmax kernels (ops/attention_gemm.cpp): keeps
// Q·scale, K and V as contiguous [B·H, T, D] copies (not P, not the output) and recomputes P in
// backward with forward's kernels, `chunk_bytes` of [Tq, Tk] scores at a time, so that its
// transients stay a few chunks whatever the batch. Any head dim, every floating dtype, both
// devices; the output is a contiguous [B, H, Tq, D].
Tensor gemm_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                      int64_t chunk_bytes = int64_t{32} << 20);

// The checks of both: one device and floating dtype, q [B, H, Tq, D], k and v [B, H, Tk, D] with
// Tk > 0; TypeError / ShapeError naming `op` and the shapes otherwise.
void check_attention_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v);

// Which kernels run the fused attention on CUDA, process-wide. automatic: for bf16, cuDNN where
// it accepts the shapes (the first refusal is reported once on stderr, with cuDNN's reason) and
// tapegrad's kernels otherwise; for f32, gemm_attention. cudnn: the same, but a cuDNN refusal is
// a BackendError with the reason. tapegrad: always tapegrad's tiled kernels.
enum class CudaAttentionBackend { automatic, cudnn, tapegrad };
void set_cuda_attention_backend(CudaAttentionBackend backend);
CudaAttentionBackend cuda_attention_backend();
// "auto", "cudnn", "tapegrad" (the --attention-backend values of train_vit and bench_vit).
CudaAttentionBackend parse_cuda_attention_backend(const std::string& name);

}  // namespace tg
