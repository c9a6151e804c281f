// Kernel entry points of the softmax family (ops/cpu/softmax.cpp, ops/cuda/softmax.cu). Every
// tensor is contiguous and viewed as [numel / cols, cols] (cols >= 1); outputs are allocated by
// the caller. `log` selects log_softmax.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace tg {
namespace cpu {
void softmax(const Tensor& y, const Tensor& x, int64_t cols, bool log);
// grad_x from grad_y and the saved output y.
void softmax_backward(const Tensor& grad_x, const Tensor& grad_y, const Tensor& y, int64_t cols, bool log);
}  // namespace cpu
#if TG_WITH_CUDA
namespace cuda {
void softmax(const Tensor& y, const Tensor& x, int64_t cols, bool log);
void softmax_backward(const Tensor& grad_x, const Tensor& grad_y, const Tensor& y, int64_t cols, bool log);
}  // namespace cuda
#endif
}  // namespace tg
