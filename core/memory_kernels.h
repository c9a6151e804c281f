// The memory kernels core needs for its own operations (copy with conversion, fill, random
// fills, host<->device transfers), one implementation per backend: core/cpu/memory_kernels.cpp
// and core/cuda/memory_kernels.cu. Callers pass tensors already checked for shape and device.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace tg::kernels {

enum class Distribution { uniform, normal };

// dst[i] = convert(src[i]); same shape (src strides may be 0 for broadcast), same device.
void copy_cpu(const Tensor& dst, const Tensor& src);
void fill_cpu(const Tensor& dst, double value);
// dst[i] += src[i]; same shape and dtype (floating).
void accumulate_cpu(const Tensor& dst, const Tensor& src);
// Contiguous dst; element i draws from Philox block first_block + i/4 (uniform, lane i%4) or
// first_block + i/2 (normal, Box-Muller lane i%2). (a, b) = (low, high) or (mean, std).
void random_cpu(const Tensor& dst, Distribution distribution, uint64_t seed, uint64_t first_block,
                double a, double b);

#if TG_WITH_CUDA
void copy_cuda(const Tensor& dst, const Tensor& src);
void fill_cuda(const Tensor& dst, double value);
void accumulate_cuda(const Tensor& dst, const Tensor& src);
void random_cuda(const Tensor& dst, Distribution distribution, uint64_t seed, uint64_t first_block,
                 double a, double b);
// targets[t] = convert(sources[t]) for contiguous pairs of equal shapes, one dtype for all the
// targets and one for all the sources, in a few multi-tensor launches (core/cuda/multi_tensor.cuh).
void convert_many_cuda(const std::vector<Tensor>& targets, const std::vector<Tensor>& sources);
// Contiguous copies between host and device memory (synchronous for the host side).
void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device_index);
void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device_index);
#endif

// Number of Philox blocks a random fill of `numel` elements consumes.
inline uint64_t random_blocks(Distribution distribution, int64_t numel) {
  const uint64_t n = static_cast<uint64_t>(numel);
  return distribution == Distribution::uniform ? (n + 3) / 4 : (n + 1) / 2;
}

}  // namespace tg::kernels
