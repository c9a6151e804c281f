// Launch helpers shared by tapegrad's CUDA kernels: the stream every kernel runs on, and grid
// sizing for grid-stride loops.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace tg {

// All of tapegrad's work on a thread runs on one stream; kernels, copies and the caching
// allocator's reuse are ordered on it. That is the legacy default stream unless a StreamGuard has
// set another: a CUDA graph's capture does (capture needs a stream of its own, core/cuda/graph.h).
// Such streams are created blocking, so they stay ordered with the legacy stream's work.
inline cudaStream_t& current_stream_slot() {
  thread_local cudaStream_t stream = nullptr;
  return stream;
}
inline cudaStream_t current_stream() { return current_stream_slot(); }

// Makes `stream` this thread's current stream until the guard dies.
class StreamGuard {
 public:
  explicit StreamGuard(cudaStream_t stream) : previous_(current_stream_slot()) { current_stream_slot() = stream; }
  ~StreamGuard() { current_stream_slot() = previous_; }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  cudaStream_t previous_;
};

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
