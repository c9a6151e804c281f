// Kernel entry points of the dropout family (ops/cpu/dropout.cpp, ops/cuda/dropout.cu): out[i] =
// in[i] / (1 - p) where the Philox uniform of element i is >= p, else 0. Forward applies it to
// x, backward to the output gradient with the same (seed, first_block). Contiguous tensors of
// one shape; out is allocated by the caller.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace tg {
namespace cpu {
void dropout_mask_apply(const Tensor& out, const Tensor& in, double p, uint64_t seed, uint64_t first_block);
}  // namespace cpu
#if TG_WITH_CUDA
namespace cuda {
void dropout_mask_apply(const Tensor& out, const Tensor& in, double p, uint64_t seed, uint64_t first_block);
}  // namespace cuda
#endif
}  // namespace tg
