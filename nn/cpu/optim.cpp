// CPU optimizer kernels, gradient clipping and the weight EMA.
#include <algorithm>
#include <cmath>

#include "core/strided.h"
#include "nn/optim_update.h"

namespace tg::nn::cpu {

void write_step_scalars(const Tensor& dst, const StepScalars& values) {
  *static_cast<StepScalars*>(dst.raw_data()) = values;
}

namespace {
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, const AdamScalars& s) {
  const StepScalars t = *s.step;
  TG_DISPATCH_FLOATING(param.dtype(), "adam", [&] {
    using acc = acc_t<scalar_t>;
    auto* p = static_cast<scalar_t*>(param.raw_data());
    const auto* g = static_cast<const scalar_t*>(grad.raw_data());
    auto* m = static_cast<scalar_t*>(exp_avg.raw_data());
    auto* v = static_cast<scalar_t*>(exp_avg_sq.raw_data());
    for (int64_t i = 0; i < param.numel(); ++i) {
      acc pi = convert<acc>(p[i]), mi = convert<acc>(m[i]), vi = convert<acc>(v[i]);
      adam_element<acc>(pi, convert<acc>(g[i]), mi, vi, s, t);
      p[i] = convert<scalar_t>(pi);
      m[i] = convert<scalar_t>(mi);
      v[i] = convert<scalar_t>(vi);
    }
  });
}

}  // namespace

void adam_steps(const std::vector<AdamTensors>& tensors, const AdamScalars& s) {
  for (const AdamTensors& t : tensors) adam_step(t.param, t.grad, t.exp_avg, t.exp_avg_sq, s);
}

void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdScalars& s) {
  const StepScalars t = *s.step;
  TG_DISPATCH_FLOATING(param.dtype(), "sgd", [&] {
    using acc = acc_t<scalar_t>;
    auto* p = static_cast<scalar_t*>(param.raw_data());
    const auto* g = static_cast<const scalar_t*>(grad.raw_data());
    auto* b = static_cast<scalar_t*>(momentum_buffer.raw_data());
    for (int64_t i = 0; i < param.numel(); ++i) {
      acc pi = convert<acc>(p[i]), bi = convert<acc>(b[i]);
      sgd_element<acc>(pi, convert<acc>(g[i]), bi, s, t);
      p[i] = convert<scalar_t>(pi);
      b[i] = convert<scalar_t>(bi);
    }
  });
}

void clip_coefficient(const std::vector<Tensor>& tensors, double max_norm, const Tensor& norm, const Tensor& coef) {
  double sum_sq = 0;
  for (const Tensor& t : tensors) {
    TG_DISPATCH_FLOATING(t.dtype(), "clip_grad_norm", [&] {
      const auto* x = static_cast<const scalar_t*>(t.raw_data());
      for (int64_t i = 0; i < t.numel(); ++i) {
        const double v = convert<double>(x[i]);
        sum_sq += v * v;
      }
    });
  }
  const double total = std::sqrt(sum_sq);
  *static_cast<float*>(norm.raw_data()) = static_cast<float>(total);
  *static_cast<float*>(coef.raw_data()) = static_cast<float>(std::min(1.0, max_norm / (total + 1e-6)));
}

void scale_by_coefficient(const std::vector<Tensor>& tensors, const Tensor& coef) {
  const float c = *static_cast<const float*>(coef.raw_data());
  if (c >= 1.0f) return;
  for (const Tensor& t : tensors) {
    TG_DISPATCH_FLOATING(t.dtype(), "clip_grad_norm", [&] {
      auto* x = static_cast<scalar_t*>(t.raw_data());
      for (int64_t i = 0; i < t.numel(); ++i) x[i] = convert<scalar_t>(convert<float>(x[i]) * c);
    });
  }
}

void ema_update(const Tensor& average, const Tensor& weight, double decay) {
  TG_DISPATCH_FLOATING(average.dtype(), "ema_update", [&] {
    using acc = acc_t<scalar_t>;
    auto* a = static_cast<scalar_t*>(average.raw_data());
    const auto* w = static_cast<const scalar_t*>(weight.raw_data());
    for (int64_t i = 0; i < average.numel(); ++i)
      a[i] = convert<scalar_t>(ema_element<acc>(convert<acc>(a[i]), convert<acc>(w[i]), static_cast<acc>(decay)));
  });
}

}  // namespace tg::nn::cpu
