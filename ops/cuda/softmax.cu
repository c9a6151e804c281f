// CUDA kernels of the softmax family: one row per warp (rows up to 1024 columns, held in
// registers, so each element is read once and written once, with one exp) or per block (longer
// rows: an online max/sum pass, then the output pass re-reads the row).
#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "ops/cuda/row_reduce.cuh"
#include "ops/softmax_kernels.h"

namespace tg::cuda {

namespace {

template <class T, class Group, int kCache>
__global__ void softmax_kernel(T* y, const T* x, int64_t rows, int64_t cols, bool log) {
  using acc = acc_t<T>;
  for (int64_t row = Group::first_row(); row < rows; row += Group::row_stride()) {
    const T* in = x + row * cols;
    T* out = y + row * cols;
    const RowSlice<acc, Group, kCache> slice(in, cols);
    if constexpr (kCache > 0) {
      // The row is in registers: its max first, then one exp per element, kept for the output
      // (the online max/sum of long rows costs two exps and a division per element).
      acc max = -static_cast<acc>(INFINITY);
      slice.for_each([&](int64_t j, int k) {
        const acc v = slice.value(in, j, k);
        max = v > max ? v : max;  // a NaN is not a max; its exp below poisons the sum
      });
      max = Group::reduce(max, -static_cast<acc>(INFINITY), [](acc a, acc b) { return a > b ? a : b; });
      acc e[kCache], sum = 0;
      slice.for_each([&](int64_t j, int k) {
        e[k] = scalar::exp(slice.value(in, j, k) - max);
        sum += e[k];
      });
      sum = Group::sum(sum);
      const acc inverse = acc(1) / sum, log_sum = log ? max + scalar::log(sum) : acc(0);
      slice.for_each([&](int64_t j, int k) {
        out[j] = convert<T>(log ? slice.value(in, j, k) - log_sum : e[k] * inverse);
      });
      continue;
    }
    MaxSum<acc> stats = MaxSum<acc>::empty();
    slice.for_each([&](int64_t j, int k) { stats.add(slice.value(in, j, k)); });
    stats = Group::softmax_stats(stats);
    const acc lse = stats.log_sum_exp();
    slice.for_each([&](int64_t j, int k) {
      const acc v = slice.value(in, j, k);
      out[j] = convert<T>(log ? v - lse : exp(v - stats.max) / stats.sum);
    });
  }
}

template <class T, class Group, int kCache>
__global__ void softmax_backward_kernel(T* grad_x, const T* grad_y, const T* y, int64_t rows, int64_t cols, bool log) {
  using acc = acc_t<T>;
  for (int64_t row = Group::first_row(); row < rows; row += Group::row_stride()) {
    const T* g = grad_y + row * cols;
    const T* out = y + row * cols;
    T* gx = grad_x + row * cols;
    const RowSlice<acc, Group, kCache> gs(g, cols), ys(out, cols);
    acc total = 0;  // log: sum(g); softmax: sum(g * y)
    gs.for_each([&](int64_t j, int k) {
      total += log ? gs.value(g, j, k) : gs.value(g, j, k) * ys.value(out, j, k);
    });
    total = Group::sum(total);
    gs.for_each([&](int64_t j, int k) {
      const acc gj = gs.value(g, j, k), yj = ys.value(out, j, k);
      gx[j] = convert<T>(log ? gj - exp(yj) * total : yj * (gj - total));
    });
  }
}

}  // namespace

void softmax(const Tensor& y, const Tensor& x, int64_t cols, bool log) {
  const int64_t rows = x.numel() / cols;
  DeviceGuard guard(x.device().index);
  TG_DISPATCH_FLOATING(x.dtype(), log ? "log_softmax" : "softmax", [&] {
    with_row_layout<true>(cols, [&](auto group, auto cache) {
      using Group = decltype(group);
      softmax_kernel<scalar_t, Group, decltype(cache)::value><<<Group::grid(rows), kRowThreads, 0, current_stream()>>>(
          static_cast<scalar_t*>(y.raw_data()), static_cast<const scalar_t*>(x.raw_data()), rows, cols, log);
      TG_CUDA_CHECK_LAUNCH();
    });
  });
}

void softmax_backward(const Tensor& grad_x, const Tensor& grad_y, const Tensor& y, int64_t cols, bool log) {
  const int64_t rows = y.numel() / cols;
  DeviceGuard guard(y.device().index);
  TG_DISPATCH_FLOATING(y.dtype(), "softmax_backward", [&] {
    with_row_layout<true>(cols, [&](auto group, auto cache) {
      using Group = decltype(group);
      softmax_backward_kernel<scalar_t, Group, decltype(cache)::value>
          <<<Group::grid(rows), kRowThreads, 0, current_stream()>>>(
              static_cast<scalar_t*>(grad_x.raw_data()), static_cast<const scalar_t*>(grad_y.raw_data()),
              static_cast<const scalar_t*>(y.raw_data()), rows, cols, log);
      TG_CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace tg::cuda
