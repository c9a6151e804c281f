// Conversions of many tensors at once: the dtype conversion of Tensor::to (core/tensor.h) for a
// list of tensors, in a few multi-tensor launches on CUDA (core/cuda/multi_tensor.cuh) instead of
// one launch per tensor.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tg {

// Each tensor converted to `dtype` as Tensor::to does (one already in it stays as it is; an
// undefined one stays undefined), the contiguous CUDA ones of each device and dtype together
// (mixed precision's bf16 copies of a model's weights, ops/precision.h).
std::vector<Tensor> to_dtype(const std::vector<Tensor>& tensors, DType dtype);

}  // namespace tg
