// Building blocks of tapegrad's per-row CUDA kernels (softmax, layer_norm, cross_entropy). A
// short row (<= 1024 columns) goes to one warp, a long one to a whole block; each thread of the
// group owns columns rank, rank + size, ... of the row. Group reductions use butterfly shuffles
// and a fixed tree, so every thread gets the same bits whatever the scheduling (no atomics).
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/cuda/launch.h"
#include "core/strided.h"
#include "ops/softmax_functors.h"

namespace tg::cuda {

inline constexpr int kRowThreads = 256;  // block size of every row kernel
inline constexpr int kWarpSize = 32;

template <class V>
__device__ inline V shuffle_xor(V v, int mask) {
  return __shfl_xor_sync(0xffffffffu, v, mask);
}
template <class A>
__device__ inline MaxSum<A> shuffle_xor(MaxSum<A> v, int mask) {
  return {shuffle_xor(v.max, mask), shuffle_xor(v.sum, mask)};
}

// The threads that share a row: one warp (8 rows per block) or the whole block (one row).
template <bool kWarpPerRow>
struct RowGroup {
  static constexpr int kSize = kWarpPerRow ? kWarpSize : kRowThreads;
  static constexpr int kRowsPerBlock = kRowThreads / kSize;

  __device__ static int rank() { return static_cast<int>(threadIdx.x) % kSize; }
  __device__ static int64_t first_row() {
    return static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kSize;
  }
  __device__ static int64_t row_stride() { return static_cast<int64_t>(gridDim.x) * kRowsPerBlock; }
  // Blocks for `rows` rows; kernels loop over rows beyond the cap. Every block gets a row.
  static unsigned grid(int64_t rows) { return grid_for(rows * kSize, kRowThreads); }

  // Combines one value per thread over the group; every thread returns the result. In the
  // block form every thread of the block must call it (it synchronizes).
  template <class V, class F>
  __device__ static V reduce(V v, V identity, F combine_fn) {
    for (int mask = kWarpSize / 2; mask > 0; mask /= 2) v = combine_fn(v, shuffle_xor(v, mask));
    if constexpr (!kWarpPerRow) {
      constexpr int kWarps = kRowThreads / kWarpSize;
      __shared__ V partial[kWarps];
      const int lane = static_cast<int>(threadIdx.x) % kWarpSize, warp = static_cast<int>(threadIdx.x) / kWarpSize;
      __syncthreads();  // readers of the previous reduction are done with `partial`
      if (lane == 0) partial[warp] = v;
      __syncthreads();
      v = lane < kWarps ? partial[lane] : identity;
      for (int mask = kWarpSize / 2; mask > 0; mask /= 2) v = combine_fn(v, shuffle_xor(v, mask));
    }
    return v;
  }
  template <class A>
  __device__ static A sum(A v) {
    return reduce(v, A(0), [](A a, A b) { return a + b; });
  }
  template <class A>
  __device__ static MaxSum<A> softmax_stats(MaxSum<A> v) {
    return reduce(v, MaxSum<A>::empty(), [](MaxSum<A> a, MaxSum<A> b) { return combine(a, b); });
  }
};

// One thread's columns of a row. With kCache > 0 (the row has at most Group::kSize * kCache
// columns) they are read once into registers and later passes reuse them; with 0 every pass
// reads global memory again (long rows, which a block re-reads mostly from L2).
template <class A, class Group, int kCache>
struct RowSlice {
  template <class T>
  __device__ RowSlice(const T* row, int64_t cols) : cols_(cols) {
    if constexpr (kCache > 0) {
#pragma unroll
      for (int k = 0; k < kCache; ++k) {
        const int64_t j = Group::rank() + static_cast<int64_t>(k) * Group::kSize;
        cached_[k] = j < cols ? convert<A>(row[j]) : A(0);
      }
    }
  }

  // f(column, k) for each of the thread's columns; k numbers them for value().
  template <class F>
  __device__ void for_each(F&& f) const {
    if constexpr (kCache > 0) {
#pragma unroll
      for (int k = 0; k < kCache; ++k) {
        const int64_t j = Group::rank() + static_cast<int64_t>(k) * Group::kSize;
        if (j < cols_) f(j, k);
      }
    } else {
      int k = 0;
      for (int64_t j = Group::rank(); j < cols_; j += Group::kSize) f(j, k++);
    }
  }

  // The value of column j (the thread's k-th), from registers or from `row`.
  template <class T>
  __device__ A value(const T* row, int64_t j, int k) const {
    if constexpr (kCache > 0) {
      (void)row, (void)j;
      return cached_[k];
    } else {
      (void)k;
      return convert<A>(row[j]);
    }
  }

 private:
  int64_t cols_;
  A cached_[kCache > 0 ? kCache : 1];
};

// Calls launch(group, cache) with the layout for rows of `cols` columns: a warp per row with
// the row in registers (when kCacheRows) up to 1024 columns, a block per row beyond.
template <bool kCacheRows, class F>
void with_row_layout(int64_t cols, F&& launch) {
  using Warp = RowGroup<true>;
  using Block = RowGroup<false>;
  auto cache = [](auto n) { return std::integral_constant<int, kCacheRows ? decltype(n)::value : 0>{}; };
  if (cols <= 32) launch(Warp{}, cache(std::integral_constant<int, 1>{}));
  else if (cols <= 128) launch(Warp{}, cache(std::integral_constant<int, 4>{}));
  else if (cols <= 512) launch(Warp{}, cache(std::integral_constant<int, 16>{}));
  else if (cols <= 1024) launch(Warp{}, cache(std::integral_constant<int, 32>{}));
  else launch(Block{}, std::integral_constant<int, 0>{});
}

}  // namespace tg::cuda
