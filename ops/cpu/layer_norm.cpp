// CPU kernels of the layer_norm family: two-pass row statistics (mean, then the squared
// deviations), and a backward whose weight/bias gradients accumulate over rows in order.
#include <cmath>
#include <vector>

#include "core/strided.h"
#include "ops/layer_norm_kernels.h"

namespace tg::cpu {

namespace {
template <class T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}
template <class T>
T* mutable_data_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}
}  // namespace

void layer_norm(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                const Tensor& bias, int64_t cols, double eps) {
  if (y.dtype() != x.dtype()) {  // an output in the autocast dtype: computed in x's, then rounded
    const Tensor full = empty(x.shape(), x.dtype(), x.device());
    layer_norm(full, mean, rstd, x, weight, bias, cols, eps);
    y.copy_(full);
    return;
  }
  const int64_t rows = x.numel() / cols;
  TG_DISPATCH_FLOATING(x.dtype(), "layer_norm", [&] {
    using acc = acc_t<scalar_t>;
    const auto* w = data_or_null<scalar_t>(weight);
    const auto* b = data_or_null<scalar_t>(bias);
    for (int64_t r = 0; r < rows; ++r) {
      const auto* in = static_cast<const scalar_t*>(x.raw_data()) + r * cols;
      auto* out = static_cast<scalar_t*>(y.raw_data()) + r * cols;
      acc total = 0;
      for (int64_t j = 0; j < cols; ++j) total += convert<acc>(in[j]);
      const acc mu = total / static_cast<acc>(cols);
      acc squares = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const acc d = convert<acc>(in[j]) - mu;
        squares += d * d;
      }
      const acc inv = acc(1) / std::sqrt(squares / static_cast<acc>(cols) + static_cast<acc>(eps));
      for (int64_t j = 0; j < cols; ++j) {
        acc v = (convert<acc>(in[j]) - mu) * inv;
        if (w) v *= convert<acc>(w[j]);
        if (b) v += convert<acc>(b[j]);
        out[j] = convert<scalar_t>(v);
      }
      mean.data<acc>()[r] = mu;
      rstd.data<acc>()[r] = inv;
    }
  });
}

void layer_norm_backward(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias,
                         const Tensor& grad_y, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, int64_t cols, bool accumulate) {
  if (grad_y.dtype() != x.dtype()) {
    layer_norm_backward(grad_x, grad_weight, grad_bias, grad_y.to(x.dtype()), x, mean, rstd, weight, cols,
                        accumulate);
    return;
  }
  const int64_t rows = x.numel() / cols;
  TG_DISPATCH_FLOATING(x.dtype(), "layer_norm_backward", [&] {
    using acc = acc_t<scalar_t>;
    const auto* w = data_or_null<scalar_t>(weight);
    auto* gx = mutable_data_or_null<scalar_t>(grad_x);
    // Column sums over all rows in f64, like the CPU sum kernel: the reference the CUDA sums meet.
    std::vector<double> gw(static_cast<size_t>(cols), 0.0), gb(static_cast<size_t>(cols), 0.0);
    std::vector<acc> xhat(static_cast<size_t>(cols)), gxhat(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      const auto* in = static_cast<const scalar_t*>(x.raw_data()) + r * cols;
      const auto* g = static_cast<const scalar_t*>(grad_y.raw_data()) + r * cols;
      const acc mu = mean.data<acc>()[r], inv = rstd.data<acc>()[r];
      acc sum_gxhat = 0, sum_gxhat_xhat = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const size_t k = static_cast<size_t>(j);
        const acc gj = convert<acc>(g[j]);
        xhat[k] = (convert<acc>(in[j]) - mu) * inv;
        gxhat[k] = w ? gj * convert<acc>(w[j]) : gj;  // dL/dxhat
        sum_gxhat += gxhat[k];
        sum_gxhat_xhat += gxhat[k] * xhat[k];
        gw[k] += static_cast<double>(gj * xhat[k]);
        gb[k] += static_cast<double>(gj);
      }
      if (!gx) continue;
      const acc n = static_cast<acc>(cols);
      for (int64_t j = 0; j < cols; ++j) {
        const size_t k = static_cast<size_t>(j);
        const scalar_t value = convert<scalar_t>(inv * (gxhat[k] - sum_gxhat / n - xhat[k] * (sum_gxhat_xhat / n)));
        scalar_t& out = gx[r * cols + j];
        out = accumulate ? convert<scalar_t>(convert<acc>(out) + convert<acc>(value)) : value;
      }
    }
    auto* dw = mutable_data_or_null<scalar_t>(grad_weight);
    auto* db = mutable_data_or_null<scalar_t>(grad_bias);
    for (int64_t j = 0; j < cols; ++j) {
      if (dw) dw[j] = convert<scalar_t>(gw[static_cast<size_t>(j)]);
      if (db) db[j] = convert<scalar_t>(gb[static_cast<size_t>(j)]);
    }
  });
}

}  // namespace tg::cpu
