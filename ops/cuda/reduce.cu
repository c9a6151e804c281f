// CUDA kernels of the reduction family. Rows (inner == 1) reduce with one block per row and a
// shared-memory tree; columns (inner > 1) with blocks of 32 columns — or 32 16-byte vectors of
// columns, where the rows allow — × 8 row lanes, split along the reduced dim into chunks when
// there are too few columns to fill the GPU (the chunks' partial sums are added by a second
// pass). Every sum runs in a fixed order: deterministic, no atomics.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/allocator.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "core/cuda/vector_map.cuh"
#include "core/strided.h"
#include "ops/reduce_kernels.h"

namespace tg::cuda {

namespace {

constexpr int kRowThreads = 256;

template <class T, class Out>
__global__ void sum_rows_kernel(Out* out, const T* in, int64_t rows, int64_t length, acc_t<T> scale) {
  using acc = acc_t<T>;
  __shared__ acc partial[kRowThreads];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* x = in + row * length;
    acc total = 0;
    for (int64_t j = threadIdx.x; j < length; j += blockDim.x) total += convert<acc>(x[j]);
    partial[threadIdx.x] = total;
    __syncthreads();
    for (int width = kRowThreads / 2; width > 0; width /= 2) {
      if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[row] = convert<Out>(partial[0] * scale);
    __syncthreads();
  }
}

constexpr int kColumnTile = 32, kRowLanes = 8;  // a column-sum block: 256 threads

// partial[c, o, i] = sum over r in chunk c of in[o, r, i] (chunks of `chunk` rows, grid.y = the
// chunks). A block covers 32 consecutive columns of one o (a warp reads 32 adjacent elements of
// a row); its 8 lanes sum rows lane, lane + 8, ... of the chunk, then lane 0 adds the 8 sums.
template <class T, class Out>
__global__ void sum_columns_kernel(Out* out, const T* in, ReduceShape s, int64_t chunk, acc_t<T> scale) {
  using acc = acc_t<T>;
  __shared__ acc lanes[kRowLanes][kColumnTile];
  const int column = static_cast<int>(threadIdx.x) % kColumnTile, lane = static_cast<int>(threadIdx.x) / kColumnTile;
  const int64_t tiles = (s.inner + kColumnTile - 1) / kColumnTile;
  const int64_t o = blockIdx.x / tiles, i = (blockIdx.x % tiles) * kColumnTile + column;
  const int64_t begin = blockIdx.y * chunk, end = min(begin + chunk, s.reduce);
  acc total = 0;
  if (i < s.inner) {
    const T* x = in + o * s.reduce * s.inner + i;
#pragma unroll 4
    for (int64_t r = begin + lane; r < end; r += kRowLanes) total += convert<acc>(x[r * s.inner]);
  }
  lanes[lane][column] = total;
  __syncthreads();
  if (lane != 0 || i >= s.inner) return;
  for (int l = 1; l < kRowLanes; ++l) total += lanes[l][column];
  out[(blockIdx.y * s.outer + o) * s.inner + i] = convert<Out>(total * scale);
}

// The same partial sums with 16-byte loads, for rows of bf16 or f32 whose length is a whole
// number of vectors and that start on 16 bytes: a block covers 32 vectors of columns (256 bf16 or
// 128 f32 columns) × 8 row lanes, so a warp reads 512 contiguous bytes of a row at once. Each
// thread keeps one sum per column of its vector; lane 0..7's sums of a column are added in
// shared memory in lane order.
constexpr int kVectorColumns = 32;

template <class T, class Out>
__global__ void sum_columns_vector_kernel(Out* out, const T* in, ReduceShape s, int64_t chunk, acc_t<T> scale) {
  using acc = acc_t<T>;
  constexpr int W = kVectorWidth<T>;
  constexpr int kWidth = kVectorColumns * W;  // columns per block
  __shared__ acc lanes[kRowLanes][kWidth];
  const int vector = static_cast<int>(threadIdx.x) % kVectorColumns, lane = static_cast<int>(threadIdx.x) / kVectorColumns;
  const int64_t tiles = (s.inner + kWidth - 1) / kWidth;
  const int64_t o = blockIdx.x / tiles, first = (blockIdx.x % tiles) * kWidth, i = first + vector * W;
  const int64_t begin = blockIdx.y * chunk, end = min(begin + chunk, s.reduce);
  acc total[W] = {};
  if (i < s.inner) {
    const T* x = in + o * s.reduce * s.inner + i;
#pragma unroll 4
    for (int64_t r = begin + lane; r < end; r += kRowLanes) {
      const Vector<W, T> v = *reinterpret_cast<const Vector<W, T>*>(x + r * s.inner);
#pragma unroll
      for (int k = 0; k < W; ++k) total[k] += convert<acc>(v.v[k]);
    }
  }
#pragma unroll
  for (int k = 0; k < W; ++k) lanes[lane][vector * W + k] = total[k];
  __syncthreads();
  for (int c = static_cast<int>(threadIdx.x); c < kWidth && first + c < s.inner; c += kColumnTile * kRowLanes) {
    acc sum = lanes[0][c];
    for (int l = 1; l < kRowLanes; ++l) sum += lanes[l][c];
    out[(blockIdx.y * s.outer + o) * s.inner + first + c] = convert<Out>(sum * scale);
  }
}

template <class T>
__global__ void max_kernel(T* values, int64_t* indices, const T* in, ReduceShape s) {
  using acc = acc_t<T>;
  TG_GRID_STRIDE_LOOP(k, s.outer * s.inner) {
    const int64_t o = k / s.inner, i = k % s.inner;
    const T* x = in + o * s.reduce * s.inner + i;
    int64_t best = 0;
    acc best_value = convert<acc>(x[0]);
    for (int64_t r = 1; r < s.reduce; ++r) {
      const acc v = convert<acc>(x[r * s.inner]);
      if (v > best_value) {
        best_value = v;
        best = r;
      }
    }
    values[k] = x[best * s.inner];
    if (indices) indices[k] = best;
  }
}

// The sums of `in` into `out` (of type Out).
template <class T, class Out>
void sum_into(Out* y, const T* x, const Tensor& in, ReduceShape s, double scale) {
  using acc = acc_t<T>;
  const cudaStream_t stream = current_stream();
  if (s.inner == 1) {
    const auto blocks = static_cast<unsigned>(std::min<int64_t>(s.outer, 65535));
    sum_rows_kernel<<<blocks, kRowThreads, 0, stream>>>(y, x, s.outer, s.reduce, static_cast<acc>(scale));
    TG_CUDA_CHECK_LAUNCH();
    return;
  }
  // Column tiles × chunks: about eight blocks per multiprocessor, each lane summing at least
  // 8 rows of its chunk.
  constexpr bool kVectorType = std::is_same_v<T, bf16> || std::is_same_v<T, float>;
  const bool vectors = kVectorType && s.inner % kVectorWidth<T> == 0 && vector_map_applies({x});
  const int64_t tile_width = vectors ? kVectorColumns * kVectorWidth<T> : kColumnTile;
  const int64_t tiles = s.outer * ((s.inner + tile_width - 1) / tile_width);
  TG_CHECK(tiles <= INT32_MAX, NotImplementedError, "sum on CUDA: ", tiles, " column tiles exceed 2^31 - 1");
  const int64_t chunks = std::clamp<int64_t>(132 * 8 / tiles, 1, std::max<int64_t>(s.reduce / (8 * kRowLanes), 1));
  const int64_t chunk = (s.reduce + chunks - 1) / chunks;
  const dim3 block(kColumnTile * kRowLanes);
  // The first pass into `target` (Out, or the accumulation type for chunk sums).
  auto first_pass = [&](auto* target, int64_t grid_chunks, acc pass_scale) {
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(grid_chunks));
    if constexpr (kVectorType) {
      if (vectors) {
        sum_columns_vector_kernel<<<grid, block, 0, stream>>>(target, x, s, chunk, pass_scale);
        TG_CUDA_CHECK_LAUNCH();
        return;
      }
    }
    sum_columns_kernel<<<grid, block, 0, stream>>>(target, x, s, chunk, pass_scale);
    TG_CUDA_CHECK_LAUNCH();
  };
  if (chunks == 1) {
    first_pass(y, 1, static_cast<acc>(scale));
    return;
  }
  // Two passes: chunk sums in the accumulation type, then their sum over chunks.
  const Tensor partial = empty({chunks, s.outer, s.inner}, dtype_v<acc>, in.device());
  first_pass(partial.data<acc>(), chunks, static_cast<acc>(1));
  const ReduceShape second{1, chunks, s.outer * s.inner};
  const int64_t second_tiles = (second.inner + kColumnTile - 1) / kColumnTile;
  sum_columns_kernel<<<dim3(static_cast<unsigned>(second_tiles), 1), block, 0, stream>>>(
      y, partial.data<acc>(), second, chunks, static_cast<acc>(scale));
  TG_CUDA_CHECK_LAUNCH();
}

}  // namespace

void sum(const Tensor& out, const Tensor& in, ReduceShape s, double scale) {
  if (out.numel() == 0) return;
  DeviceGuard guard(in.device().index);
  TG_DISPATCH_FLOATING(in.dtype(), "sum", [&] {
    const auto* x = static_cast<const scalar_t*>(in.raw_data());
    if (out.dtype() == in.dtype()) {
      sum_into(static_cast<scalar_t*>(out.raw_data()), x, in, s, scale);
    } else {
      TG_INTERNAL_ASSERT(in.dtype() == DType::bf16 && out.dtype() == DType::f32, "sum on CUDA: ",
                         dtype_name(in.dtype()), " into ", dtype_name(out.dtype()));
      sum_into(out.data<float>(), x, in, s, scale);
    }
  });
}

void max(const Tensor& values, const Tensor& indices, const Tensor& in, ReduceShape s) {
  const int64_t n = s.outer * s.inner;
  if (n == 0) return;
  DeviceGuard guard(in.device().index);
  TG_DISPATCH_FLOATING(in.dtype(), "max", [&] {
    max_kernel<<<grid_for(n), kBlockSize, 0, current_stream()>>>(
        static_cast<scalar_t*>(values.raw_data()), indices.defined() ? indices.data<int64_t>() : nullptr,
        static_cast<const scalar_t*>(in.raw_data()), s);
    TG_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace tg::cuda
