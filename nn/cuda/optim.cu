// CUDA optimizer kernels: Adam and gradient clipping as multi-tensor launches over one chunk
// table (up to 48 tensors each: a handful of kernels for all parameters, not a few per
// parameter); SGD and the weight EMA one grid-stride pass per parameter.
#include <array>
#include <map>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "core/cuda/multi_tensor.cuh"
#include "core/strided.h"
#include "nn/optim_update.h"
#include "ops/cuda/row_reduce.cuh"

namespace tg::nn::cuda {

namespace {
template <class T>
__global__ void sgd_kernel(T* p, const T* g, T* b, int64_t n, SgdScalars s) {
  using acc = acc_t<T>;
  const StepScalars t = *s.step;
  TG_GRID_STRIDE_LOOP(i, n) {
    acc pi = convert<acc>(p[i]), bi = convert<acc>(b[i]);
    sgd_element<acc>(pi, convert<acc>(g[i]), bi, s, t);
    p[i] = convert<T>(pi);
    b[i] = convert<T>(bi);
  }
}

template <class T>
__global__ void ema_kernel(T* average, const T* w, int64_t n, acc_t<T> decay) {
  using acc = acc_t<T>;
  TG_GRID_STRIDE_LOOP(i, n) average[i] = convert<T>(ema_element<acc>(convert<acc>(average[i]), convert<acc>(w[i]), decay));
}

using tg::cuda::ChunkList;
using tg::cuda::chunk_span;
using tg::cuda::ChunkSpan;
using tg::cuda::for_each_chunk_list;
using tg::cuda::kChunk;
using tg::cuda::total_chunks;

using Block = tg::cuda::RowGroup<false>;

template <class T>
__global__ void __launch_bounds__(kBlockSize) sum_squares_kernel(ChunkList<1> list, float* partials) {
  const ChunkSpan span = chunk_span(list);
  const T* x = static_cast<const T*>(list.data[0][span.tensor]);
  float acc = 0;
  for (int64_t i = span.begin + threadIdx.x; i < span.end; i += kBlockSize) {
    const float v = convert<float>(x[i]);
    acc += v * v;
  }
  acc = Block::sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void __launch_bounds__(kBlockSize)
    clip_coefficient_kernel(const float* partials, int64_t count, float max_norm, float* norm, float* coef) {
  float acc = 0;
  for (int64_t i = threadIdx.x; i < count; i += kBlockSize) acc += partials[i];
  acc = Block::sum(acc);
  if (threadIdx.x == 0) {
    const float total = sqrtf(acc);
    *norm = total;
    *coef = fminf(1.0f, max_norm / (total + 1e-6f));
  }
}

template <class T>
__global__ void __launch_bounds__(kBlockSize) scale_kernel(ChunkList<1> list, const float* coef) {
  const float c = *coef;
  if (c >= 1.0f) return;
  const ChunkSpan span = chunk_span(list);
  T* x = static_cast<T*>(list.data[0][span.tensor]);
  for (int64_t i = span.begin + threadIdx.x; i < span.end; i += kBlockSize) x[i] = convert<T>(convert<float>(x[i]) * c);
}

// One Adam update per element of each chunk: list.data = (parameter, gradient, exp_avg, exp_avg_sq).
template <class T>
__global__ void __launch_bounds__(kBlockSize) adam_kernel(ChunkList<4> list, AdamScalars s) {
  static_assert(sizeof(ChunkList<4>) + sizeof(AdamScalars) <= 4096, "kernel arguments are limited to 4 KiB");
  using acc = acc_t<T>;
  const StepScalars t = *s.step;
  const ChunkSpan span = chunk_span(list);
  T* p = static_cast<T*>(list.data[0][span.tensor]);
  const T* g = static_cast<const T*>(list.data[1][span.tensor]);
  T* m = static_cast<T*>(list.data[2][span.tensor]);
  T* v = static_cast<T*>(list.data[3][span.tensor]);
  for (int64_t i = span.begin + threadIdx.x; i < span.end; i += kBlockSize) {
    acc pi = convert<acc>(p[i]), mi = convert<acc>(m[i]), vi = convert<acc>(v[i]);
    adam_element<acc>(pi, convert<acc>(g[i]), mi, vi, s, t);
    p[i] = convert<T>(pi);
    m[i] = convert<T>(mi);
    v[i] = convert<T>(vi);
  }
}

}  // namespace

void clip_coefficient(const std::vector<Tensor>& tensors, double max_norm, const Tensor& norm, const Tensor& coef) {
  static_assert(kBlockSize == tg::cuda::kRowThreads, "the block reduction assumes kRowThreads threads");
  DeviceGuard guard(norm.device().index);
  const int64_t chunks = total_chunks(tensors);
  const Tensor partials = empty({std::max<int64_t>(chunks, 1)}, DType::f32, norm.device());  // [chunks]
  auto* partial_data = static_cast<float*>(partials.raw_data());
  if (chunks == 0) TG_CUDA_CHECK(cudaMemsetAsync(partial_data, 0, sizeof(float), current_stream()));
  for_each_chunk_list(tensors, [&](DType dtype, const ChunkList<1>& list, int64_t list_chunks, int64_t first_chunk) {
    TG_DISPATCH_FLOATING(dtype, "clip_grad_norm", [&] {
      sum_squares_kernel<scalar_t><<<static_cast<unsigned>(list_chunks), kBlockSize, 0, current_stream()>>>(
          list, partial_data + first_chunk);
      TG_CUDA_CHECK_LAUNCH();
    });
  });
  clip_coefficient_kernel<<<1, kBlockSize, 0, current_stream()>>>(partial_data, std::max<int64_t>(chunks, 1),
                                                                   static_cast<float>(max_norm),
                                                                   static_cast<float*>(norm.raw_data()),
                                                                   static_cast<float*>(coef.raw_data()));
  TG_CUDA_CHECK_LAUNCH();
}

void scale_by_coefficient(const std::vector<Tensor>& tensors, const Tensor& coef) {
  DeviceGuard guard(coef.device().index);
  const auto* c = static_cast<const float*>(coef.raw_data());
  for_each_chunk_list(tensors, [&](DType dtype, const ChunkList<1>& list, int64_t list_chunks, int64_t) {
    TG_DISPATCH_FLOATING(dtype, "clip_grad_norm", [&] {
      scale_kernel<scalar_t><<<static_cast<unsigned>(list_chunks), kBlockSize, 0, current_stream()>>>(list, c);
      TG_CUDA_CHECK_LAUNCH();
    });
  });
}

__global__ void write_step_scalars_kernel(StepScalars* dst, StepScalars values) { *dst = values; }

void write_step_scalars(const Tensor& dst, const StepScalars& values) {
  DeviceGuard guard(dst.device().index);
  write_step_scalars_kernel<<<1, 1, 0, current_stream()>>>(static_cast<StepScalars*>(dst.raw_data()), values);
  TG_CUDA_CHECK_LAUNCH();
}

void adam_steps(const std::vector<AdamTensors>& tensors, const AdamScalars& s) {
  if (tensors.empty()) return;
  DeviceGuard guard(tensors.front().param.device().index);
  std::vector<std::array<const Tensor*, 4>> operands;
  for (const AdamTensors& t : tensors) operands.push_back({&t.param, &t.grad, &t.exp_avg, &t.exp_avg_sq});
  for_each_chunk_list<4>(operands, [&](DType dtype, const ChunkList<4>& list, int64_t chunks, int64_t) {
    TG_DISPATCH_FLOATING(dtype, "adam", [&] {
      adam_kernel<scalar_t><<<static_cast<unsigned>(chunks), kBlockSize, 0, current_stream()>>>(list, s);
      TG_CUDA_CHECK_LAUNCH();
    });
  });
}

void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdScalars& s) {
  const int64_t n = param.numel();
  if (n == 0) return;
  DeviceGuard guard(param.device().index);
  TG_DISPATCH_FLOATING(param.dtype(), "sgd", [&] {
    sgd_kernel<<<grid_for(n), kBlockSize, 0, current_stream()>>>(
        static_cast<scalar_t*>(param.raw_data()), static_cast<const scalar_t*>(grad.raw_data()),
        static_cast<scalar_t*>(momentum_buffer.raw_data()), n, s);
    TG_CUDA_CHECK_LAUNCH();
  });
}

void ema_update(const Tensor& average, const Tensor& weight, double decay) {
  const int64_t n = average.numel();
  if (n == 0) return;
  DeviceGuard guard(average.device().index);
  TG_DISPATCH_FLOATING(average.dtype(), "ema_update", [&] {
    ema_kernel<<<grid_for(n), kBlockSize, 0, current_stream()>>>(static_cast<scalar_t*>(average.raw_data()),
                                                                 static_cast<const scalar_t*>(weight.raw_data()), n,
                                                                 static_cast<acc_t<scalar_t>>(decay));
    TG_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace tg::nn::cuda
