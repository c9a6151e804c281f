// CUDA kernels of the layer_norm family, one pass per row (a warp per row up to 1024 columns,
// the row held in registers, with 16-byte loads for f32 rows of 128·k columns; a block per row
// beyond). The weight/bias gradients are sums over rows: each block accumulates its rows in a
// fixed order into its own slice of a partial buffer, and a deterministic column sum (tg::sum)
// adds the slices. No atomics.
#include <algorithm>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/vector_map.cuh"
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

// Four elements of a row as floats (from f32 or bf16 storage).
template <class T>
__device__ inline float4 load4(const T* row, int64_t k) {
  if constexpr (std::is_same_v<T, float>) {
    return reinterpret_cast<const float4*>(row)[k];
  } else {
    const Vector<4, T> v = reinterpret_cast<const Vector<4, T>*>(row)[k];
    return {convert<float>(v.v[0]), convert<float>(v.v[1]), convert<float>(v.v[2]), convert<float>(v.v[3])};
  }
}

// The f32 forward of rows of 128·kVectors columns (the ViT widths 384 and 768): a warp per row,
// each lane holding kVectors float4 of it (columns 4·(32·i + lane) ...), read and written 16
// bytes at a time (the general kernel above moves 4 bytes per load). Pointers 16-byte aligned.
template <class Out, int kVectors>
__global__ void layer_norm_vector_kernel(Out* y, float* mean, float* rstd, const float* x, const float* weight,
                                         const float* bias, int64_t rows, int64_t cols, float eps) {
  using Group = RowGroup<true>;
  const int lane = Group::rank();
  const float n = static_cast<float>(cols);
  for (int64_t row = Group::first_row(); row < rows; row += Group::row_stride()) {
    float4 v[kVectors];
    float total = 0;
#pragma unroll
    for (int i = 0; i < kVectors; ++i) {
      v[i] = load4(x + row * cols, i * kWarpSize + lane);
      total += (v[i].x + v[i].y) + (v[i].z + v[i].w);
    }
    const float mu = Group::sum(total) / n;
    float squares = 0;  // two passes, as the general kernel
#pragma unroll
    for (int i = 0; i < kVectors; ++i) {
      const float a = v[i].x - mu, b = v[i].y - mu, c = v[i].z - mu, d = v[i].w - mu;
      squares += (a * a + b * b) + (c * c + d * d);
    }
    const float inv = 1.0f / sqrtf(Group::sum(squares) / n + eps);
    auto* out = reinterpret_cast<Vector<4, Out>*>(y + row * cols);
#pragma unroll
    for (int i = 0; i < kVectors; ++i) {
      const int64_t k = i * kWarpSize + lane;
      float o[4] = {(v[i].x - mu) * inv, (v[i].y - mu) * inv, (v[i].z - mu) * inv, (v[i].w - mu) * inv};
      if (weight) {
        const float4 w = load4(weight, k);
        o[0] *= w.x, o[1] *= w.y, o[2] *= w.z, o[3] *= w.w;
      }
      if (bias) {
        const float4 b = load4(bias, k);
        o[0] += b.x, o[1] += b.y, o[2] += b.z, o[3] += b.w;
      }
      Vector<4, Out> packed;
#pragma unroll
      for (int e = 0; e < 4; ++e) packed.v[e] = convert<Out>(o[e]);
      out[k] = packed;
    }
    if (lane == 0) {
      mean[row] = mu;
      rstd[row] = inv;
    }
  }
}

// a + b rounded on its own. Adding an input gradient into the engine's pending sum must give the
// engine's bits (autograd/pending_grad.h), so the compiler may not fuse this add with the product
// that formed b into one FMA.
__device__ inline float add_unfused(float a, float b) { return __fadd_rn(a, b); }
__device__ inline double add_unfused(double a, double b) { return __dadd_rn(a, b); }

// partial (when not null) is [gridDim.x, 2, cols]: per block, sum of g * xhat and sum of g.
// grad_y in G: T, or bf16 (the gradient of an output in the autocast dtype).
template <class T, class G, class Group, int kCache>
__global__ void layer_norm_backward_kernel(T* grad_x, acc_t<T>* partial, const G* grad_y, const T* x,
                                           const acc_t<T>* mean, const acc_t<T>* rstd, const T* weight,
                                           int64_t rows, int64_t cols, bool accumulate) {
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
      const T value = convert<T>(inv * (gxhat - sum_gxhat - xhat * sum_gxhat_xhat));
      T& out = grad_x[row * cols + j];
      out = accumulate ? convert<T>(add_unfused(convert<acc>(out), convert<acc>(value))) : value;
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

__device__ inline float at(const float4& v, int e) { return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w; }

// The backward counterpart of layer_norm_vector_kernel (f32 x, grad_y in G: f32 or bf16): a warp
// per row, 16-byte loads; each lane keeps its columns' weight/bias-gradient sums in registers and
// the block adds its warps' sums in order into its slice of `partial` ([gridDim.x, 2, cols]).
// kAccumulate: grad_x holds the engine's pending sum, loaded with x and grad_y so that its
// latency overlaps theirs (a template argument: the plain kernel keeps its registers).
template <class G, int kVectors, bool kAccumulate>
__global__ void layer_norm_backward_vector_kernel(float* grad_x, float* partial, const G* grad_y, const float* x,
                                                  const float* mean, const float* rstd, const float* weight,
                                                  int64_t rows, int64_t cols) {
  using Group = RowGroup<true>;
  const int lane = Group::rank();
  const float n = static_cast<float>(cols);
  float gw_sum[kVectors][4] = {}, gb_sum[kVectors][4] = {};
  for (int64_t row = Group::first_row(); row < rows; row += Group::row_stride()) {
    const float mu = mean[row], inv = rstd[row];
    float4 xv[kVectors], gv[kVectors], pending[kAccumulate ? kVectors : 1];
    float sum_gxhat = 0, sum_gxhat_xhat = 0;
#pragma unroll
    for (int i = 0; i < kVectors; ++i) {
      const int64_t k = i * kWarpSize + lane;
      xv[i] = load4(x + row * cols, k);
      gv[i] = load4(grad_y + row * cols, k);
      if constexpr (kAccumulate) pending[i] = load4(grad_x + row * cols, k);
      const float4 w = weight ? load4(weight, k) : float4{1, 1, 1, 1};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float xhat = (at(xv[i], e) - mu) * inv, g = at(gv[i], e), gxhat = g * at(w, e);
        sum_gxhat += gxhat;
        sum_gxhat_xhat += gxhat * xhat;
        gw_sum[i][e] += g * xhat;
        gb_sum[i][e] += g;
      }
    }
    sum_gxhat = Group::sum(sum_gxhat) / n;
    sum_gxhat_xhat = Group::sum(sum_gxhat_xhat) / n;
    if (!grad_x) continue;
#pragma unroll
    for (int i = 0; i < kVectors; ++i) {
      const int64_t k = i * kWarpSize + lane;
      const float4 w = weight ? load4(weight, k) : float4{1, 1, 1, 1};
      float value[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float xhat = (at(xv[i], e) - mu) * inv, gxhat = at(gv[i], e) * at(w, e);
        value[e] = inv * (gxhat - sum_gxhat - xhat * sum_gxhat_xhat);
        if constexpr (kAccumulate) value[e] = add_unfused(at(pending[i], e), value[e]);
      }
      reinterpret_cast<float4*>(grad_x + row * cols)[k] = {value[0], value[1], value[2], value[3]};
    }
  }
  if (!partial) return;
  __shared__ float sums[2][1024];
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  for (int w = 0; w < Group::kRowsPerBlock; ++w) {
    if (warp == w) {
#pragma unroll
      for (int i = 0; i < kVectors; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = 4 * (i * kWarpSize + lane) + e;
          sums[0][c] = (w == 0 ? 0.0f : sums[0][c]) + gw_sum[i][e];
          sums[1][c] = (w == 0 ? 0.0f : sums[1][c]) + gb_sum[i][e];
        }
    }
    __syncthreads();
  }
  float* slice = partial + blockIdx.x * 2 * cols;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    slice[j] = sums[0][j];
    slice[cols + j] = sums[1][j];
  }
}

// Calls f(std::integral_constant<int, cols / 128>) when f32 rows of `cols` columns take the
// vector kernels (128·k columns, k <= 8, every pointer 16-byte aligned); returns whether it did.
template <class F>
bool with_vectors(int64_t cols, std::initializer_list<const void*> pointers, F&& f) {
  if (cols % 128 != 0 || cols > 1024 || !vector_map_applies(pointers)) return false;
  switch (cols / 128) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
  return true;
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
      if constexpr (std::is_same_v<scalar_t, float>) {
        const bool vectorized =
            with_vectors(cols, {x.raw_data(), y.raw_data(), data_or_null<void>(weight), data_or_null<void>(bias)},
                         [&](auto vectors) {
              layer_norm_vector_kernel<Out, decltype(vectors)::value>
                  <<<RowGroup<true>::grid(rows), kRowThreads, 0, current_stream()>>>(
                      static_cast<Out*>(y.raw_data()), mean.data<float>(), rstd.data<float>(),
                      static_cast<const float*>(x.raw_data()), data_or_null<float>(weight),
                      data_or_null<float>(bias), rows, cols, static_cast<float>(eps));
              TG_CUDA_CHECK_LAUNCH();
            });
        if (vectorized) return;
      }
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
                         const Tensor& weight, int64_t cols, bool accumulate) {
  const int64_t rows = x.numel() / cols;
  const bool affine_grads = grad_weight.defined() || grad_bias.defined();
  DeviceGuard guard(x.device().index);
  TG_DISPATCH_FLOATING(x.dtype(), "layer_norm_backward", [&] {
    using acc = acc_t<scalar_t>;
    with_other_dtype<scalar_t>(grad_y.dtype(), [&](auto grad_type) {
      using G = decltype(grad_type);
      auto* gx = grad_x.defined() ? static_cast<scalar_t*>(grad_x.raw_data()) : nullptr;
      const auto* gy = static_cast<const G*>(grad_y.raw_data());
      const auto* in = static_cast<const scalar_t*>(x.raw_data());
      // Blocks in the row layout's grid, capped when they keep weight/bias partial sums.
      auto blocks_for = [&](unsigned grid) { return affine_grads ? std::min(grid, kPartialBlocks) : grid; };
      Tensor partial;
      auto make_partial = [&](unsigned blocks) {
        if (affine_grads) partial = empty({blocks, 2, cols}, dtype_v<acc>, x.device());
        return affine_grads ? partial.data<acc>() : nullptr;
      };
      bool vectorized = false;
      if constexpr (std::is_same_v<scalar_t, float>) {
        vectorized = with_vectors(cols, {gx, gy, in, data_or_null<void>(weight)}, [&](auto vectors) {
          const unsigned blocks = blocks_for(RowGroup<true>::grid(rows));
          auto launch = [&](auto kernel) {
            kernel<<<blocks, kRowThreads, 0, current_stream()>>>(gx, make_partial(blocks), gy, in, mean.data<float>(),
                                                                 rstd.data<float>(), data_or_null<float>(weight), rows,
                                                                 cols);
            TG_CUDA_CHECK_LAUNCH();
          };
          constexpr int kV = decltype(vectors)::value;
          if (accumulate) launch(layer_norm_backward_vector_kernel<G, kV, true>);
          else launch(layer_norm_backward_vector_kernel<G, kV, false>);
        });
      }
      if (!vectorized) {
        with_row_layout<true>(cols, [&](auto group, auto cache) {
          using Group = decltype(group);
          const unsigned blocks = blocks_for(Group::grid(rows));
          layer_norm_backward_kernel<scalar_t, G, Group, decltype(cache)::value>
              <<<blocks, kRowThreads, 0, current_stream()>>>(gx, make_partial(blocks), gy, in, mean.data<acc>(),
                                                            rstd.data<acc>(), data_or_null<scalar_t>(weight), rows,
                                                            cols, accumulate);
          TG_CUDA_CHECK_LAUNCH();
        });
      }
      if (!affine_grads) return;
      const Tensor sums = sum(partial, {0});  // [2, cols], deterministic
      if (grad_weight.defined()) grad_weight.copy_(sums.raw_select(0, 0));
      if (grad_bias.defined()) grad_bias.copy_(sums.raw_select(0, 1));
    });
  });
}

}  // namespace tg::cuda
