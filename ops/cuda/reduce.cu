// CUDA kernels of the reduction family. Rows (inner == 1) reduce with one block per row and a
// shared-memory tree; columns (inner > 1) with blocks of 32 columns × 8 row lanes, split along
// the reduced dim into chunks when there are too few columns to fill the GPU (the chunks'
// partial sums are added by a second pass). Every sum runs in a fixed order: deterministic, no
// atomics.
#include <algorithm>
#include <cstdint>

#include "core/allocator.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
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
  const int64_t tiles = s.outer * ((s.inner + kColumnTile - 1) / kColumnTile);
  TG_CHECK(tiles <= INT32_MAX, NotImplementedError, "sum on CUDA: ", tiles, " column tiles exceed 2^31 - 1");
  const int64_t chunks = std::clamp<int64_t>(132 * 8 / tiles, 1, std::max<int64_t>(s.reduce / (8 * kRowLanes), 1));
  const int64_t chunk = (s.reduce + chunks - 1) / chunks;
  const dim3 block(kColumnTile * kRowLanes);
  if (chunks == 1) {
    sum_columns_kernel<<<dim3(static_cast<unsigned>(tiles), 1), block, 0, stream>>>(y, x, s, chunk,
                                                                                  static_cast<acc>(scale));
    TG_CUDA_CHECK_LAUNCH();
    return;
  }
  // Two passes: chunk sums in the accumulation type, then their sum over chunks.
  const Tensor partial = empty({chunks, s.outer, s.inner}, dtype_v<acc>, in.device());
  sum_columns_kernel<<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks)), block, 0, stream>>>(
      partial.data<acc>(), x, s, chunk, static_cast<acc>(1));
  TG_CUDA_CHECK_LAUNCH();
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
