// Kernel entry points of index_select (ops/cpu/index.cpp, ops/cuda/index.cu). The source is
// contiguous and viewed as [outer, size, inner]; the selected tensor is contiguous
// [outer, count, inner] with count = indices.numel(); indices are contiguous i64 or i32.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace tg {
struct IndexShape {
  int64_t outer, size, inner, count;
};
namespace cpu {
// out[o, k, :] = x[o, indices[k], :], any dtype; IndexError for an index outside [0, size).
void index_select(const Tensor& out, const Tensor& x, const Tensor& indices, IndexShape shape);
// grad_x (zeroed by the caller) [o, i, :] = sum over k with indices[k] == i of grad_out[o, k, :],
// summed in increasing k in the accumulation type; floating dtypes.
void index_select_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices, IndexShape shape);
}  // namespace cpu
#if TG_WITH_CUDA
namespace cuda {
// As on the CPU, except that out-of-range indices give zero rows (forward) and are skipped
// (backward): checking them would need a device-to-host copy.
void index_select(const Tensor& out, const Tensor& x, const Tensor& indices, IndexShape shape);
void index_select_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices, IndexShape shape);
}  // namespace cuda
#endif

// Runs f(index_t{}) with index_t the C++ type of an index dtype (i64 or i32, checked by the op).
template <class F>
void dispatch_index_type(DType dtype, F&& f) {
  if (dtype == DType::i32) f(int32_t{});
  else f(int64_t{});
}
}  // namespace tg
