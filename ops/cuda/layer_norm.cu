// CUDA kernels of the layer_norm family, one pass per row (a warp per row up to 1024 columns,
// the row held in registers; a block per row beyond). The weight/bias gradients are sums over
// rows: each block accumulates its rows in a fixed order into its own slice of a partial
// buffer, and a deterministic column sum (tg::sum) adds the slices. No atomics.
#include <algorithm>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "ops/cuda/row_reduce.cuh"
#include "ops/layer_norm_kernels.h"
#include "ops/reduce.h"

namespace tg::cuda {

namespace {

// About one wave of the backward kernel on an H100/H200 at its register use; bounds the partial
// buffer to kPartialBlocks * 2 * cols accumulators.
constexpr unsigned kPartialBlocks = 4 * 132;

template <class T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}

// y in Out: T, or bf16 for the autocast dtype.
template <class T, class Out, class Group, int kCache>
__global__ void layer_norm_kernel(Out* y, acc_t<T>* mean, acc_t<T>* rstd, const T* x, const T* weight, const T* bias,
                                  int64_t rows, int64_t cols, acc_t<T> eps) {
  using acc = acc_t<T>;
  const acc n = static_cast<acc>(cols);
  for (int64_t row = Group::first_row(); row < rows; row += Group::row_stride()) {
    const T* in = x + row * cols;
    Out* out = y + row * cols;
    const RowSlice<acc, Group, kCache> xs(in, cols);
    acc total = 0;
    xs.for_each([&](int64_t j, int k) { total += xs.value(in, j, k); });
    const acc mu = Group::sum(total) / n;
    acc squares = 0;  // two passes: no cancellation in E[x^2] - E[x]^2
    xs.for_each([&](int64_t j, int k) {
      const acc d = xs.value(in, j, k) - mu;
      squares += d * d;
    });
    const acc inv = acc(1) / sqrt(Group::sum(squares) / n + eps);
    xs.for_each([&](int64_t j, int k) {
      acc v = (xs.value(in, j, k) - mu) * inv;
      if (weight) v *= convert<acc>(weight[j]);
      if (bias) v += convert<acc>(bias[j]);
      out[j] = convert<Out>(v);
    });
    if (Group::rank() == 0) {
      mean[row] = mu;
      rstd[row] = inv;
    }
  }
}

// partial (when not null) is [gridDim.x, 2, cols]: per block, sum of g * xhat and sum of g.
// grad_y in G: T, or bf16 (the gradient of an output in the autocast dtype).
template <class T, class G, class Group, int kCache>
__global__ void layer_norm_backward_kernel(T* grad_x, acc_t<T>* partial, const G* grad_y, const T* x,
                                           const acc_t<T>* mean, const acc_t<T>* rstd, const T* weight,
                                           int64_t rows, int64_t cols) {
  using acc = acc_t<T>;
  const acc n = static_cast<acc>(cols);
  // Warp rows keep each lane's column sums in registers; block rows update the block's slice.
  acc gw_sum[kCache > 0 ? kCache : 1] = {}, gb_sum[kCache > 0 ? kCache : 1] = {};
  acc* slice = partial ? partial + blockIdx.x * 2 * cols : nullptr;
  for (int64_t row = Group::first_row(); row < rows; row += Group::row_stride()) {
    const T* in = x + row * cols;
    const G* g = grad_y + row * cols;
    const RowSlice<acc, Group, kCache> xs(in, cols), gs(g, cols);
    const acc mu = mean[row], inv = rstd[row];
    const bool first = row == Group::first_row();
    acc sum_gxhat = 0, sum_gxhat_xhat = 0;
    xs.for_each([&](int64_t j, int k) {
      const acc xhat = (xs.value(in, j, k) - mu) * inv, gj = gs.value(g, j, k);
      const acc gxhat = weight ? gj * convert<acc>(weight[j]) : gj;
      sum_gxhat += gxhat;
      sum_gxhat_xhat += gxhat * xhat;
      if constexpr (kCache > 0) {
        gw_sum[k] += gj * xhat;
        gb_sum[k] += gj;
      } else if (slice) {
        slice[j] = (first ? acc(0) : slice[j]) + gj * xhat;
        slice[cols + j] = (first ? acc(0) : slice[cols + j]) + gj;
      }
    });
    sum_gxhat = Group::sum(sum_gxhat) / n;
    sum_gxhat_xhat = Group::sum(sum_gxhat_xhat) / n;
    if (!grad_x) continue;
    xs.for_each([&](int64_t j, int k) {
      const acc xhat = (xs.value(in, j, k) - mu) * inv, gj = gs.value(g, j, k);
      const acc gxhat = weight ? gj * convert<acc>(weight[j]) : gj;
      grad_x[row * cols + j] = convert<T>(inv * (gxhat - sum_gxhat - xhat * sum_gxhat_xhat));
    });
  }
  if constexpr (kCache > 0) {
    if (!slice) return;
    // The block's warps add their register sums into shared memory one warp at a time.
    constexpr int kWidth = kWarpSize * kCache;
    __shared__ acc sums[2 * kWidth];
    const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
    for (int w = 0; w < Group::kRowsPerBlock; ++w) {
      if (warp == w) {
#pragma unroll
        for (int k = 0; k < kCache; ++k) {
          const int i = Group::rank() + k * kWarpSize;
          sums[i] = (w == 0 ? acc(0) : sums[i]) + gw_sum[k];
          sums[kWidth + i] = (w == 0 ? acc(0) : sums[kWidth + i]) + gb_sum[k];
        }
      }
      __syncthreads();
    }
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      slice[j] = sums[j];
      slice[cols + j] = sums[kWidth + j];
    }
  }
}

// Calls f(Other{}) with Other = T when `other` is x's dtype, bf16 when it is the autocast dtype
// of an f32 x (no other pairs occur).
template <class T, class F>
void with_other_dtype(DType other, F&& f) {
  if (other == dtype_v<T>) return f(T{});
  TG_INTERNAL_ASSERT((std::is_same_v<T, float> && other == DType::bf16), "layer_norm: unexpected dtype pair ",
                     dtype_name(dtype_v<T>), ", ", dtype_name(other));
  if constexpr (std::is_same_v<T, float>) f(bf16{});
}

}  // namespace

void layer_norm(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                const Tensor& bias, int64_t cols, double eps) {
  const int64_t rows = x.numel() / cols;
  DeviceGuard guard(x.device().index);
  TG_DISPATCH_FLOATING(x.dtype(), "layer_norm", [&] {
    using acc = acc_t<scalar_t>;
    with_other_dtype<scalar_t>(y.dtype(), [&](auto out_type) {
      using Out = decltype(out_type);
      with_row_layout<true>(cols, [&](auto group, auto cache) {
        using Group = decltype(group);
        layer_norm_kernel<scalar_t, Out, Group, decltype(cache)::value>
            <<<Group::grid(rows), kRowThreads, 0, current_stream()>>>(
                static_cast<Out*>(y.raw_data()), mean.data<acc>(), rstd.data<acc>(),
                static_cast<const scalar_t*>(x.raw_data()), data_or_null<scalar_t>(weight),
                data_or_null<scalar_t>(bias), rows, cols, static_cast<acc>(eps));
        TG_CUDA_CHECK_LAUNCH();
      });
    });
  });
}

void layer_norm_backward(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias,
                         const Tensor& grad_y, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, int64_t cols) {
  const int64_t rows = x.numel() / cols;
  const bool affine_grads = grad_weight.defined() || grad_bias.defined();
  DeviceGuard guard(x.device().index);
  TG_DISPATCH_FLOATING(x.dtype(), "layer_norm_backward", [&] {
    using acc = acc_t<scalar_t>;
    with_other_dtype<scalar_t>(grad_y.dtype(), [&](auto grad_type) {
    using G = decltype(grad_type);
    with_row_layout<true>(cols, [&](auto group, auto cache) {
      using Group = decltype(group);
      const unsigned blocks = affine_grads ? std::min(Group::grid(rows), kPartialBlocks) : Group::grid(rows);
      const Tensor partial = affine_grads ? empty({blocks, 2, cols}, dtype_v<acc>, x.device()) : Tensor();
      layer_norm_backward_kernel<scalar_t, G, Group, decltype(cache)::value>
          <<<blocks, kRowThreads, 0, current_stream()>>>(
              grad_x.defined() ? static_cast<scalar_t*>(grad_x.raw_data()) : nullptr,
              affine_grads ? partial.data<acc>() : nullptr, static_cast<const G*>(grad_y.raw_data()),
              static_cast<const scalar_t*>(x.raw_data()), mean.data<acc>(), rstd.data<acc>(),
              data_or_null<scalar_t>(weight), rows, cols);
      TG_CUDA_CHECK_LAUNCH();
      if (!affine_grads) return;
      const Tensor sums = sum(partial, {0});  // [2, cols], deterministic
      if (grad_weight.defined()) grad_weight.copy_(sums.raw_select(0, 0));
      if (grad_bias.defined()) grad_bias.copy_(sums.raw_select(0, 1));
    });
    });
  });
}

}  // namespace tg::cuda
