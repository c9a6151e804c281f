// CUDA kernels of the sampling family that work on rows of an operand: row norms (one warp per
// row) and the row gathers of the sampled matmul nodes (one warp per slot), both with 16-byte
// vectors where the rows allow them, and the gradient-norm proxy's moving average (one block per
// position, fixed-order reduction).
#include <cub/block/block_reduce.cuh>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "core/cuda/vector_map.cuh"
#include "core/strided.h"
#include "ops/matmul/sampling_kernels.h"

namespace tg::cuda {

namespace {

constexpr int kWarp = 32;

// Rows move in 16-byte vectors of W elements when every row starts 16-byte aligned (W = 1
// otherwise): a warp then reads 512 contiguous bytes per load, and the loads of a row are
// independent of the stores (the operands do not alias), so they pipeline.
template <class T>
constexpr int kRowVector = static_cast<int>(16 / sizeof(T));

template <class T>
bool rows_vectorizable(int64_t length, std::initializer_list<const void*> pointers) {
  return length % kRowVector<T> == 0 && vector_map_applies(pointers);
}

// One warp per row; times scale[row % positions] when a scale is given.
template <class T, int W>
__global__ void row_norms_kernel(float* __restrict__ out, const T* __restrict__ x, int64_t rows, int64_t length,
                                 const float* __restrict__ scale, int64_t positions) {
  using acc = acc_t<T>;
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / kWarp);
  const int64_t vectors = length / W;
  // `row` is the same for all lanes of a warp, so whole warps take the loop together.
  for (int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp; row < rows;
       row += warps) {
    const auto* values = reinterpret_cast<const Vector<W, T>*>(x + row * length);
    acc squares = 0;
    for (int64_t i = lane; i < vectors; i += kWarp) {
      const Vector<W, T> v = values[i];
#pragma unroll
      for (int j = 0; j < W; ++j) {
        const acc e = convert<acc>(v.v[j]);
        squares += e * e;
      }
    }
    for (int offset = kWarp / 2; offset > 0; offset /= 2) squares += __shfl_down_sync(0xffffffffu, squares, offset);
    if (lane == 0) {
      const auto norm = static_cast<float>(sqrt(squares));
      out[row] = scale ? norm * scale[row % positions] : norm;
    }
  }
}

// The gathers: one warp per slot, its lanes along the row (coalesced; one division per slot,
// not per element).
constexpr int kGatherThreads = 256, kSlotsPerBlock = kGatherThreads / kWarp;

unsigned gather_grid(int64_t slots) {
  return static_cast<unsigned>(std::clamp<int64_t>((slots + kSlotsPerBlock - 1) / kSlotsPerBlock, 1, 132 * 16));
}

// out[slot, :] = weight(slot) * x[b * K + indices[slot], :] for the slots of [batch, k].
template <class T, int W, class Weight>
__global__ void __launch_bounds__(kGatherThreads)
    gather_kernel(T* __restrict__ out, const T* __restrict__ x, const int32_t* __restrict__ indices, Weight weight,
                  int64_t K, int64_t k, int64_t D, int64_t slots) {
  const int lane = threadIdx.x % kWarp;
  const int64_t vectors = D / W;
  for (int64_t slot = blockIdx.x * static_cast<int64_t>(kSlotsPerBlock) + threadIdx.x / kWarp; slot < slots;
       slot += static_cast<int64_t>(gridDim.x) * kSlotsPerBlock) {
    const auto* src = reinterpret_cast<const Vector<W, T>*>(x + (slot / k * K + indices[slot]) * D);
    auto* dst = reinterpret_cast<Vector<W, T>*>(out + slot * D);
    const auto w = weight(slot);
    for (int64_t i = lane; i < vectors; i += kWarp) {
      Vector<W, T> v = src[i];
#pragma unroll
      for (int j = 0; j < W; ++j) v.v[j] = w(v.v[j]);
      dst[i] = v;
    }
  }
}

// Launches gather_kernel with 16-byte vectors when out, x and the row length allow it.
template <class T, class Weight>
void launch_gather(T* out, const T* x, const Tensor& indices, Weight weight, int64_t K, int64_t D) {
  const int64_t slots = indices.numel(), k = indices.size(1);
  const unsigned grid = gather_grid(slots);
  if (rows_vectorizable<T>(D, {out, x}))
    gather_kernel<T, kRowVector<T>><<<grid, kGatherThreads, 0, current_stream()>>>(out, x, indices.data<int32_t>(),
                                                                                   weight, K, k, D, slots);
  else
    gather_kernel<T, 1><<<grid, kGatherThreads, 0, current_stream()>>>(out, x, indices.data<int32_t>(), weight, K, k,
                                                                       D, slots);
  TG_CUDA_CHECK_LAUNCH();
}

// Copies the row as it is.
struct Unweighted {
  struct Identity {
    template <class T>
    __device__ T operator()(T v) const { return v; }
  };
  __device__ Identity operator()(int64_t) const { return {}; }
};

// Multiplies by the slot's importance weight in acc arithmetic.
template <class T>
struct ByWeight {
  const float* weights;
  struct Scale {
    acc_t<T> w;
    __device__ T operator()(T v) const { return convert<T>(w * convert<acc_t<T>>(v)); }
  };
  __device__ Scale operator()(int64_t slot) const { return {static_cast<acc_t<T>>(weights[slot])}; }
};

constexpr int kEmaThreads = 256;

// Block t averages the norms of rows t, t + P, t + 2P, ... and updates ema[t].
__global__ void __launch_bounds__(kEmaThreads)
    ema_kernel(float* ema, const float* norms, int64_t rows, int64_t P, double beta) {
  using BlockReduce = cub::BlockReduce<double, kEmaThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  const int64_t t = blockIdx.x;
  double sum = 0;
  for (int64_t r = t + threadIdx.x * P; r < rows; r += kEmaThreads * P) sum += static_cast<double>(norms[r]);
  sum = BlockReduce(temp).Sum(sum);
  if (threadIdx.x == 0) {
    const int64_t count = (rows - t + P - 1) / P;
    ema[t] = static_cast<float>(beta * static_cast<double>(ema[t]) + (1.0 - beta) * (sum / static_cast<double>(count)));
  }
}

void launch_row_norms(float* out, const Tensor& x, int64_t rows, int64_t length, const float* scale = nullptr,
                      int64_t positions = 1) {
  TG_DISPATCH_FLOATING(x.dtype(), "row_norms", [&] {
    const auto* values = static_cast<const scalar_t*>(x.raw_data());
    const unsigned grid = grid_for(rows * kWarp);
    if (rows_vectorizable<scalar_t>(length, {values}))
      row_norms_kernel<scalar_t, kRowVector<scalar_t>><<<grid, kBlockSize, 0, current_stream()>>>(
          out, values, rows, length, scale, positions);
    else
      row_norms_kernel<scalar_t, 1><<<grid, kBlockSize, 0, current_stream()>>>(out, values, rows, length, scale,
                                                                               positions);
    TG_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void row_norms(const Tensor& out, const Tensor& x, const Tensor& position_scale) {
  DeviceGuard guard(x.device().index);
  const bool scaled = position_scale.defined();
  launch_row_norms(out.data<float>(), x, x.size(0) * x.size(1), x.size(2),
                   scaled ? position_scale.data<float>() : nullptr, scaled ? position_scale.numel() : 1);
}

void gather_rows(const Tensor& out, const Tensor& x, const Tensor& indices) {
  DeviceGuard guard(x.device().index);
  TG_DISPATCH_FLOATING(x.dtype(), "gather_rows", [&] {
    launch_gather(static_cast<scalar_t*>(out.raw_data()), static_cast<const scalar_t*>(x.raw_data()), indices,
                  Unweighted{}, x.size(1), x.size(2));
  });
}

void gather_scaled_rows(const Tensor& out, const Tensor& g, const Tensor& indices, const Tensor& weights) {
  DeviceGuard guard(g.device().index);
  TG_DISPATCH_FLOATING(g.dtype(), "gather_scaled_rows", [&] {
    launch_gather(static_cast<scalar_t*>(out.raw_data()), static_cast<const scalar_t*>(g.raw_data()), indices,
                  ByWeight<scalar_t>{weights.data<float>()}, g.size(1), g.size(2));
  });
}

void update_row_norm_ema(const Tensor& ema, const Tensor& g, double beta) {
  DeviceGuard guard(g.device().index);
  const int64_t rows = g.size(0) * g.size(1), P = ema.size(0);
  const Tensor norms = empty({rows}, DType::f32, g.device());
  launch_row_norms(norms.data<float>(), g, rows, g.size(2));
  // Positions beyond the last row (P > rows) have no rows and keep their value.
  const int64_t positions = std::min(P, rows);
  ema_kernel<<<static_cast<unsigned>(positions), kEmaThreads, 0, current_stream()>>>(ema.data<float>(),
                                                                                    norms.data<float>(), rows, P, beta);
  TG_CUDA_CHECK_LAUNCH();
}

}  // namespace tg::cuda
