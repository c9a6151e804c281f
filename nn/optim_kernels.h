// Fused optimizer updates (nn/cpu/optim.cpp, nn/cuda/optim.cu): one pass over a parameter,
// its gradient and its state buffers (all contiguous, same dtype and device); the two
// multi-tensor passes of gradient clipping; and the weight EMA's update (nn/ema.h).
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tg::nn {

// What changes from step to step. The update kernels read it from memory on the parameters'
// device (Optimizer::prepare_step writes it there), not from their arguments, so that a CUDA
// graph captured once replays every later step with that step's values.
struct StepScalars {
  double lr;
  double bias_correction1, bias_correction2_sqrt;  // Adam: 1 - beta1^t and sqrt(1 - beta2^t)
  double first_step;                               // SGD: 1 on the first step, else 0
};

struct AdamScalars {
  double beta1, beta2, eps, weight_decay;
  bool decoupled;
  const StepScalars* step;  // on the parameters' device
};

// One parameter of a multi-tensor Adam update and its state (contiguous, one dtype and device).
struct AdamTensors {
  Tensor param, grad, exp_avg, exp_avg_sq;
};

struct SgdScalars {
  double momentum, dampening, weight_decay;
  bool nesterov;
  const StepScalars* step;  // on the parameters' device
};

namespace cpu {
// *dst = values; dst is a [4] f64 tensor (StepScalars' layout), written in stream order.
void write_step_scalars(const Tensor& dst, const StepScalars& values);
// One Adam update of each of `tensors` (one device), in as few launches as the device allows.
void adam_steps(const std::vector<AdamTensors>& tensors, const AdamScalars& s);
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
void write_step_scalars(const Tensor& dst, const StepScalars& values);
// One Adam update of each of `tensors` (one device), in as few launches as the device allows.
void adam_steps(const std::vector<AdamTensors>& tensors, const AdamScalars& s);
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
