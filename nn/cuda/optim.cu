// CUDA optimizer kernels: one grid-stride pass per parameter.
#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "core/strided.h"
#include "nn/optim_update.h"

namespace tg::nn::cuda {

namespace {
template <class T>
__global__ void adam_kernel(T* p, const T* g, T* m, T* v, int64_t n, AdamScalars s) {
  using acc = acc_t<T>;
  TG_GRID_STRIDE_LOOP(i, n) {
    acc pi = convert<acc>(p[i]), mi = convert<acc>(m[i]), vi = convert<acc>(v[i]);
    adam_element<acc>(pi, convert<acc>(g[i]), mi, vi, s);
    p[i] = convert<T>(pi);
    m[i] = convert<T>(mi);
    v[i] = convert<T>(vi);
  }
}

template <class T>
__global__ void sgd_kernel(T* p, const T* g, T* b, int64_t n, SgdScalars s) {
  using acc = acc_t<T>;
  TG_GRID_STRIDE_LOOP(i, n) {
    acc pi = convert<acc>(p[i]), bi = convert<acc>(b[i]);
    sgd_element<acc>(pi, convert<acc>(g[i]), bi, s);
    p[i] = convert<T>(pi);
    b[i] = convert<T>(bi);
  }
}
}  // namespace

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, const AdamScalars& s) {
  const int64_t n = param.numel();
  if (n == 0) return;
  DeviceGuard guard(param.device().index);
  TG_DISPATCH_FLOATING(param.dtype(), "adam", [&] {
    adam_kernel<<<grid_for(n), kBlockSize, 0, current_stream()>>>(
        static_cast<scalar_t*>(param.raw_data()), static_cast<const scalar_t*>(grad.raw_data()),
        static_cast<scalar_t*>(exp_avg.raw_data()), static_cast<scalar_t*>(exp_avg_sq.raw_data()), n, s);
    TG_CUDA_CHECK_LAUNCH();
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

}  // namespace tg::nn::cuda
