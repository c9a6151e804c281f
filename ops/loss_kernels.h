// Kernel entry points of the loss family (ops/cpu/loss.cpp, ops/cuda/loss.cu). logits are
// contiguous [N, C]; targets contiguous [N] (i64 or i32); row_loss and lse are [N] in f32 (f64
// for f64 logits); grad_loss is the scalar gradient of the mean loss, left on its device.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace tg {

// Calls f(index) with a value of the C++ type of the targets' dtype (i64 or i32).
template <class F>
void with_target_type(DType dtype, F&& f) {
  if (dtype == DType::i64) f(int64_t{});
  else f(int32_t{});
}

namespace cpu {
void cross_entropy(const Tensor& row_loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                   double label_smoothing);
void cross_entropy_backward(const Tensor& grad_logits, const Tensor& grad_loss, const Tensor& logits,
                            const Tensor& targets, const Tensor& lse, double label_smoothing);
}  // namespace cpu
#if TG_WITH_CUDA
namespace cuda {
void cross_entropy(const Tensor& row_loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                   double label_smoothing);
void cross_entropy_backward(const Tensor& grad_logits, const Tensor& grad_loss, const Tensor& logits,
                            const Tensor& targets, const Tensor& lse, double label_smoothing);
}  // namespace cuda
#endif
}  // namespace tg
