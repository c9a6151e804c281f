// Launch helpers shared by tapegrad's CUDA kernels: the stream every kernel runs on, and grid
// sizing for grid-stride loops.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace tg {

// All of tapegrad's work runs on one stream per device; kernels, copies and the caching
// allocator's reuse are ordered on it. (The legacy default stream for now; changing it here
// changes it everywhere.)
inline cudaStream_t current_stream() { return nullptr; }

inline constexpr int kBlockSize = 256;

// Enough blocks for `numel` elements, capped so grid-stride loops keep every SM busy.
inline unsigned grid_for(int64_t numel, int block_size = kBlockSize) {
  const int64_t blocks = (numel + block_size - 1) / block_size;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 132 * 32));
}

}  // namespace tg

// for (int64_t i ...) over [0, n) in a grid-stride loop.
#define TG_GRID_STRIDE_LOOP(i, n)                                                          \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
