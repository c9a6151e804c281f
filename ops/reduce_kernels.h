// Kernel entry points of the reduction family (ops/cpu/reduce.cpp, ops/cuda/reduce.cu). The
// input is contiguous and viewed as [outer, reduce, inner]; outputs are contiguous
// [outer, inner], in the input's dtype or, for `sum` of a bf16 input, f32 (the f32 sum stored
// unrounded: mixed precision's gradients of f32 parameters). Sums accumulate in f32 (f64 for
// f64 inputs) in a fixed order: no atomics, so results are reproducible run to run.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace tg {
struct ReduceShape {
  int64_t outer, reduce, inner;
};
namespace cpu {
void sum(const Tensor& out, const Tensor& in, ReduceShape shape, double scale);
void max(const Tensor& values, const Tensor& indices, const Tensor& in, ReduceShape shape);
}  // namespace cpu
#if TG_WITH_CUDA
namespace cuda {
void sum(const Tensor& out, const Tensor& in, ReduceShape shape, double scale);
void max(const Tensor& values, const Tensor& indices, const Tensor& in, ReduceShape shape);
}  // namespace cuda
#endif
}  // namespace tg
