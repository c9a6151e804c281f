// Fused scaled-dot-product attention: out = softmax(q·kᵀ·scale)·v per batch and head, without
// keeping the [T, T] probabilities. Forward keeps q, k, v, out and each query row's log-sum-exp
// of the scaled scores; backward recomputes the probabilities tile by tile from them (flash
// attention's scheme). The explicit path (matmul, softmax, matmul; nn::Attention with
// attention_mode explicit) stays for the sampled attention matmuls, which need the scores as a
// matmul node.
#pragma once

#include <string>

#include "core/tensor.h"

namespace tg {

// q, k, v [B, H, T, D] (any strides), one floating dtype; out [B, H, T, D] in that dtype, a view
// of a [B, T, H, D] buffer, so that merging the heads (transpose(1, 2), reshape [B, T, H·D]) is
// free. Accumulation is f32 (f64 for f64 inputs on the CPU). CUDA kernels: head dims 32 and 64,
// f32 (CUDA cores, no TF32) and bf16 (tensor cores); other head dims raise NotImplementedError.
// bf16 on CUDA runs cuDNN's fused flash attention where the build has cuDNN and its engines
// accept the shapes (see CudaAttentionBackend).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale);

// Which kernels run the bf16 fused attention on CUDA, process-wide. automatic: cuDNN where it
// accepts the shapes (the first refusal is reported once on stderr, with cuDNN's reason), tapegrad's
// kernels otherwise; cudnn: cuDNN or a BackendError with the reason; tapegrad: always tapegrad's
// kernels. f32 always runs tapegrad's kernels (cuDNN's fused attention is bf16/fp16 only).
enum class CudaAttentionBackend { automatic, cudnn, tapegrad };
void set_cuda_attention_backend(CudaAttentionBackend backend);
CudaAttentionBackend cuda_attention_backend();
// "auto", "cudnn", "tapegrad" (the --attention-backend values of train_vit and bench_vit).
CudaAttentionBackend parse_cuda_attention_backend(const std::string& name);

}  // namespace tg
