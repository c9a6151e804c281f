// The bf16 fused attention through cuDNN (ops/cuda/attention_cudnn.cpp), called by
// ops/cuda/attention.cu before its own kernels. Same tensors and layouts as
// ops/attention_kernels.h; lse is cuDNN's softmax statistics (the row log-sum-exp of the scaled
// scores, natural log), so either backward can follow either forward.
#pragma once

#include "core/tensor.h"

namespace tg::cuda {

// Each returns true when cuDNN ran the op, false when the caller should run tapegrad's kernels
// (cuDNN not built in, backend tapegrad, or cuDNN refused the shapes under backend automatic).
// Under backend cudnn a refusal throws BackendError with cuDNN's reason.
bool cudnn_attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                             double scale);
bool cudnn_attention_backward(const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v,
                              const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& out, const Tensor& lse, double scale);

}  // namespace tg::cuda
