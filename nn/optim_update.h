// The per-element optimizer updates shared by the CPU and CUDA kernels (PyTorch's formulas), and
// the weight EMA's (timm's ModelEmaV2).
#pragma once

#include <cmath>

#include "core/dtype.h"
#include "core/scalar_math.h"
#include "nn/optim_kernels.h"

namespace tg::nn {

// Adam/AdamW on one element, in acc arithmetic; updates p, m, v in place.
// `t` is the step's StepScalars, read once by the kernel.
template <class A>
TG_HOST_DEVICE inline void adam_element(A& p, A g, A& m, A& v, const AdamScalars& s, const StepScalars& t) {
  if (s.decoupled) p -= static_cast<A>(t.lr) * static_cast<A>(s.weight_decay) * p;
  else g += static_cast<A>(s.weight_decay) * p;
  m = static_cast<A>(s.beta1) * m + (A(1) - static_cast<A>(s.beta1)) * g;
  v = static_cast<A>(s.beta2) * v + (A(1) - static_cast<A>(s.beta2)) * g * g;
  const A denom = scalar::sqrt(v) / static_cast<A>(t.bias_correction2_sqrt) + static_cast<A>(s.eps);
  p -= static_cast<A>(t.lr) / static_cast<A>(t.bias_correction1) * m / denom;
}

// SGD with momentum (dampening, Nesterov) on one element.
template <class A>
TG_HOST_DEVICE inline void sgd_element(A& p, A g, A& buf, const SgdScalars& s, const StepScalars& t) {
  g += static_cast<A>(s.weight_decay) * p;
  if (s.momentum != 0) {
    buf = t.first_step != 0 ? g : static_cast<A>(s.momentum) * buf + (A(1) - static_cast<A>(s.dampening)) * g;
    g = s.nesterov ? g + static_cast<A>(s.momentum) * buf : buf;
  }
  p -= static_cast<A>(t.lr) * g;
}

// The EMA of one weight: decay * average + (1 - decay) * w.
template <class A>
TG_HOST_DEVICE inline A ema_element(A average, A w, A decay) {
  return decay * average + (A(1) - decay) * w;
}

}  // namespace tg::nn
