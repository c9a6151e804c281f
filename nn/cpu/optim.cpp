// CPU optimizer kernels.
#include "core/strided.h"
#include "nn/optim_update.h"

namespace tg::nn::cpu {

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, const AdamScalars& s) {
  TG_DISPATCH_FLOATING(param.dtype(), "adam", [&] {
    using acc = acc_t<scalar_t>;
    auto* p = static_cast<scalar_t*>(param.raw_data());
    const auto* g = static_cast<const scalar_t*>(grad.raw_data());
    auto* m = static_cast<scalar_t*>(exp_avg.raw_data());
    auto* v = static_cast<scalar_t*>(exp_avg_sq.raw_data());
    for (int64_t i = 0; i < param.numel(); ++i) {
      acc pi = convert<acc>(p[i]), mi = convert<acc>(m[i]), vi = convert<acc>(v[i]);
      adam_element<acc>(pi, convert<acc>(g[i]), mi, vi, s);
      p[i] = convert<scalar_t>(pi);
      m[i] = convert<scalar_t>(mi);
      v[i] = convert<scalar_t>(vi);
    }
  });
}

void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdScalars& s) {
  TG_DISPATCH_FLOATING(param.dtype(), "sgd", [&] {
    using acc = acc_t<scalar_t>;
    auto* p = static_cast<scalar_t*>(param.raw_data());
    const auto* g = static_cast<const scalar_t*>(grad.raw_data());
    auto* b = static_cast<scalar_t*>(momentum_buffer.raw_data());
    for (int64_t i = 0; i < param.numel(); ++i) {
      acc pi = convert<acc>(p[i]), bi = convert<acc>(b[i]);
      sgd_element<acc>(pi, convert<acc>(g[i]), bi, s);
      p[i] = convert<scalar_t>(pi);
      b[i] = convert<scalar_t>(bi);
    }
  });
}

}  // namespace tg::nn::cpu
