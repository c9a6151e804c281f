// Optimizers (SGD with momentum, Adam, AdamW) with PyTorch's update rules, fused kernels (one
// pass over param, grad and state; on the GPU Adam updates up to 48 parameters per launch, and
// nothing synchronises with the host);
// global grad-norm clipping on the device; the cosine schedule with linear warm-up.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/optim_kernels.h"

namespace tg::nn {

struct ParamSpec {
  std::string name;
  Tensor param;
  bool weight_decay = true;  // false for biases, norms and embeddings (see decay_specs)
};

// Pairs each named parameter with its decay flag: no decay for 1-D parameters (biases, norm
// weights) and for names in `no_decay` (e.g. "cls_token", "pos_embed").
std::vector<ParamSpec> decay_specs(const std::vector<std::pair<std::string, Tensor>>& named,
                                   const std::vector<std::string>& no_decay = {});

class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamSpec> params, double lr);
  virtual ~Optimizer();  // removes the hooks of apply_in_backward
  Optimizer(const Optimizer&) = delete;  // the hooks hold `this`
  Optimizer& operator=(const Optimizer&) = delete;
  // One update from the current .grad() of each parameter (parameters without one are skipped):
  // prepare_step(), then apply_step().
  void step();
  // The two halves of step(), for CUDA graphs: prepare_step() counts the step and writes its
  // StepScalars (lr, bias corrections) to the parameters' device; apply_step() launches the
  // updates, which read them there. A graph captures apply_step() once and replays it after each
  // prepare_step(). The set of parameters with a gradient must be the same in every replay.
  void prepare_step();
  void apply_step();
  void zero_grad();
  // The optimizer in backward: from now on each parameter is updated as soon as a backward pass
  // has completed its gradient (its post-accumulate-grad hook), and the gradient is then
  // dropped, so that the gradients of the whole model are never alive together (with Adam's
  // state kept in f32). Call prepare_step() before each backward; apply_step() and zero_grad()
  // then find no gradients. Incompatible with what needs every gradient at once: global-norm
  // clipping, accumulation over several backward passes. The same updates as step() after the
  // same backward, bit for bit (each parameter's update reads only its own gradient and state).
  void apply_in_backward();
  bool in_backward() const { return in_backward_; }
  void set_lr(double lr) { lr_ = lr; }
  double lr() const { return lr_; }
  int64_t step_count() const { return steps_; }
  // Everything needed for an exact resume: "step" and every parameter's buffers
  // ("<name>.<buffer>"; zeros for a parameter that had no gradient yet).
  std::map<std::string, Tensor> state_dict() const;
  // Strict: a missing, unexpected, mis-shaped or mis-typed key is an error naming it, and then
  // nothing is changed.
  void load_state_dict(const std::map<std::string, Tensor>& state);

 protected:
  // A parameter (by index) and its gradient, made contiguous.
  struct GradientOf {
    size_t index;
    Tensor grad;
  };
  static GradientOf gradient_of(size_t index, const Tensor& grad) {
    return {index, grad.is_contiguous() ? grad : grad.raw_contiguous()};
  }
  // This step's updates, in parameter order, of the parameters that have a gradient.
  virtual void update(const std::vector<GradientOf>& gradients) = 0;
  virtual std::vector<std::string> buffer_names() const = 0;
  // This step's values (after the step count was raised): lr and first_step; Adam adds its bias
  // corrections.
  virtual StepScalars step_scalars() const;
  // Where the update kernels read them (on the parameters' device).
  const StepScalars* device_step_scalars() const {
    return static_cast<const StepScalars*>(step_scalars_.raw_data());
  }
  // The buffer `b` of parameter `index`, created as zeros like the parameter on first use.
  Tensor& buffer(size_t index, size_t b);
  const std::vector<ParamSpec>& params() const { return params_; }

 private:
  std::vector<ParamSpec> params_;
  std::vector<std::vector<Tensor>> buffers_;
  double lr_;
  int64_t steps_ = 0;
  bool in_backward_ = false;
  Tensor step_scalars_;  // StepScalars as [4] f64 on the parameters' device
};

struct SgdOptions {
  double lr = 0.1, momentum = 0.9, weight_decay = 0, dampening = 0;
  bool nesterov = false;
};

class SGD final : public Optimizer {
 public:
  SGD(std::vector<ParamSpec> params, SgdOptions options);

 private:
  void update(const std::vector<GradientOf>& gradients) override;
  std::vector<std::string> buffer_names() const override { return {"momentum_buffer"}; }
  SgdOptions options_;
};

struct AdamOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled_weight_decay = false;  // true: AdamW
};

class Adam final : public Optimizer {
 public:
  Adam(std::vector<ParamSpec> params, AdamOptions options);

 private:
  void update(const std::vector<GradientOf>& gradients) override;
  std::vector<std::string> buffer_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  StepScalars step_scalars() const override;
  AdamOptions options_;
};

// AdamW = Adam with decoupled weight decay (PyTorch's default weight_decay = 0.01).
inline AdamOptions adamw_options(double lr, double weight_decay = 0.01) {
  AdamOptions o;
  o.lr = lr;
  o.weight_decay = weight_decay;
  o.decoupled_weight_decay = true;
  return o;
}

// Scales all gradients in place so their global L2 norm is at most max_norm (PyTorch's
// clip_grad_norm_); returns the norm before clipping as a 0-dim f32 tensor on the parameters'
// device, and when `coefficient` is given, stores there the factor applied, min(1, max_norm /
// (norm + 1e-6)), as another. On the GPU: a few multi-tensor launches for all parameters, no
// host synchronisation, and no pass over the gradients at all when they are within the limit.
Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm, Tensor* coefficient = nullptr);

// Learning rate at `step` (0-based): linear warm-up to base_lr over warmup_steps, then a
// cosine decay to min_lr at total_steps.
double cosine_lr(int64_t step, int64_t total_steps, int64_t warmup_steps, double base_lr, double min_lr = 0);

}  // namespace tg::nn
