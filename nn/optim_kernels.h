// Fused optimizer updates (nn/cpu/optim.cpp, nn/cuda/optim.cu): one pass over a parameter,
// its gradient and its state buffers (all contiguous, same dtype and device); the two
// multi-tensor passes of gradient clipping; and the weight EMA's update (nn/ema.h).
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tg::nn {

struct AdamScalars {
  double lr, beta1, beta2, eps, weight_decay;
  double bias_correction1, bias_correction2_sqrt;  // 1 - beta1^t and sqrt(1 - beta2^t)
  bool decoupled;
};

struct SgdScalars {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, first_step;
};

namespace cpu {
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, const AdamScalars& s);
void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdScalars& s);
// Global L2 norm of `tensors` (contiguous, floating, one device) into `norm` and the clipping
// factor min(1, max_norm / (norm + 1e-6)) into `coef` (both 0-dim f32, written on the device).
void clip_coefficient(const std::vector<Tensor>& tensors, double max_norm, const Tensor& norm, const Tensor& coef);
// tensors *= coef in place, skipped entirely (nothing read or written) when coef >= 1.
void scale_by_coefficient(const std::vector<Tensor>& tensors, const Tensor& coef);
// average = decay * average + (1 - decay) * weight, in place (contiguous, same shape and dtype).
void ema_update(const Tensor& average, const Tensor& weight, double decay);
}  // namespace cpu
#if TG_WITH_CUDA
namespace cuda {
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq, const AdamScalars& s);
void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdScalars& s);
// Global L2 norm of `tensors` (contiguous, floating, one device) into `norm` and the clipping
// factor min(1, max_norm / (norm + 1e-6)) into `coef` (both 0-dim f32, written on the device).
void clip_coefficient(const std::vector<Tensor>& tensors, double max_norm, const Tensor& norm, const Tensor& coef);
// tensors *= coef in place, skipped entirely (nothing read or written) when coef >= 1.
void scale_by_coefficient(const std::vector<Tensor>& tensors, const Tensor& coef);
// average = decay * average + (1 - decay) * weight, in place (contiguous, same shape and dtype).
void ema_update(const Tensor& average, const Tensor& weight, double decay);
}  // namespace cuda
#endif

}  // namespace tg::nn
