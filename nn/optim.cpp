// Optimizer bookkeeping, SGD/Adam dispatch, gradient clipping and the LR schedule.
#include "nn/optim.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/grad_mode.h"
#include "nn/optim_kernels.h"
#include "ops/dispatch.h"

namespace tg::nn {

std::vector<ParamSpec> decay_specs(const std::vector<std::pair<std::string, Tensor>>& named,
                                   const std::vector<std::string>& no_decay) {
  std::vector<ParamSpec> specs;
  for (const auto& [name, tensor] : named) {
    const bool listed = std::find(no_decay.begin(), no_decay.end(), name) != no_decay.end();
    specs.push_back({name, tensor, tensor.dim() >= 2 && !listed});
  }
  return specs;
}

Optimizer::Optimizer(std::vector<ParamSpec> params, double lr) : params_(std::move(params)), lr_(lr) {
  for (const ParamSpec& spec : params_) {
    TG_CHECK(spec.param.defined() && spec.param.is_leaf() && spec.param.requires_grad(), ValueError,
             "optimizer: parameter '", spec.name, "' must be a leaf tensor that requires grad");
    TG_CHECK(spec.param.is_contiguous(), ValueError, "optimizer: parameter '", spec.name, "' must be contiguous");
    TG_CHECK(spec.param.device() == params_.front().param.device(), TypeError, "optimizer: expected every parameter on ",
             params_.front().param.device().str(), ", got '", spec.name, "' on ", spec.param.device().str());
  }
  buffers_.resize(params_.size());
  static_assert(sizeof(StepScalars) == 4 * sizeof(double), "StepScalars is stored as [4] f64");
  if (!params_.empty()) step_scalars_ = zeros({4}, DType::f64, params_.front().param.device());
}

Optimizer::~Optimizer() {
  if (in_backward_)
    for (const ParamSpec& spec : params_) spec.param.set_post_accumulate_grad_hook({});
}

void Optimizer::apply_in_backward() {
  for (size_t i = 0; i < params_.size(); ++i)
    params_[i].param.set_post_accumulate_grad_hook([this, i](const Tensor& param) {
      NoGradGuard no_grad;
      update({gradient_of(i, param.grad())});
      param.set_grad(Tensor());
    });
  in_backward_ = true;
}

Tensor& Optimizer::buffer(size_t index, size_t b) {
  std::vector<Tensor>& buffers = buffers_[index];
  if (buffers.size() <= b) buffers.resize(buffer_names().size());
  if (!buffers[b].defined()) buffers[b] = zeros_like(params_[index].param);
  return buffers[b];
}

void Optimizer::step() {
  prepare_step();
  apply_step();
}

StepScalars Optimizer::step_scalars() const { return {lr_, 1, 1, steps_ == 1 ? 1.0 : 0.0}; }

void Optimizer::prepare_step() {
  ++steps_;
  if (step_scalars_.defined())
    TG_DEVICE_DISPATCH(step_scalars_.device(), write_step_scalars, step_scalars_, step_scalars());
}

void Optimizer::apply_step() {
  NoGradGuard no_grad;
  std::vector<GradientOf> gradients;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor grad = params_[i].param.grad();
    if (grad.defined()) gradients.push_back(gradient_of(i, grad));
  }
  if (!gradients.empty()) update(gradients);
}

void Optimizer::zero_grad() {
  for (const ParamSpec& spec : params_) spec.param.set_grad(Tensor());
}

std::map<std::string, Tensor> Optimizer::state_dict() const {
  std::map<std::string, Tensor> state;
  state["step"] = from_vector<int64_t>({steps_}, {1});
  const auto names = buffer_names();
  // Every buffer of every parameter, zeros where none was made yet (exactly what buffer() would
  // create), so that loading can insist on the complete set.
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t b = 0; b < names.size(); ++b)
      state[params_[i].name + "." + names[b]] = b < buffers_[i].size() && buffers_[i][b].defined()
                                                    ? buffers_[i][b]
                                                    : zeros_like(params_[i].param);
  return state;
}

void Optimizer::load_state_dict(const std::map<std::string, Tensor>& state) {
  auto step = state.find("step");
  TG_CHECK(step != state.end(), ValueError, "optimizer load_state_dict: missing key 'step'");
  const Tensor& count = step->second;
  TG_CHECK(count.dtype() == DType::i64 && count.numel() == 1, ValueError,
           "optimizer load_state_dict: 'step' must be one i64, got ", dtype_name(count.dtype()), " of shape ",
           count.shape().str());
  const auto steps = count.to_vector<int64_t>()[0];
  TG_CHECK(steps >= 0, ValueError, "optimizer load_state_dict: 'step' is ", steps, ", expected >= 0");
  // Strict both ways: every buffer present with the parameter's shape and dtype, nothing else.
  const auto names = buffer_names();
  std::set<std::string> expected{"step"};
  std::vector<std::vector<Tensor>> loaded(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& param = params_[i].param;
    for (size_t b = 0; b < names.size(); ++b) {
      const std::string key = params_[i].name + "." + names[b];
      expected.insert(key);
      auto it = state.find(key);
      TG_CHECK(it != state.end(), ValueError, "optimizer load_state_dict: missing key '", key, "' (expected shape ",
               param.shape().str(), ")");
      TG_CHECK(it->second.shape() == param.shape(), ShapeError, "optimizer load_state_dict: '", key, "' has shape ",
               it->second.shape().str(), ", expected ", param.shape().str());
      TG_CHECK(it->second.dtype() == param.dtype(), TypeError, "optimizer load_state_dict: '", key, "' has dtype ",
               dtype_name(it->second.dtype()), ", expected ", dtype_name(param.dtype()));
      loaded[i].push_back(it->second.to(param.device()).clone());
    }
  }
  for (const auto& [key, value] : state)
    TG_CHECK(expected.count(key) == 1, ValueError, "optimizer load_state_dict: unexpected key '", key, "' (shape ",
             value.shape().str(), ") is not 'step' nor '<parameter>.<buffer>' of this optimizer (buffers: ",
             [&] {
               std::string list;
               for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
               return list;
             }(), ")");
  // Only a complete, checked state replaces the current one.
  steps_ = steps;
  buffers_ = std::move(loaded);
}

SGD::SGD(std::vector<ParamSpec> params, SgdOptions options) : Optimizer(std::move(params), options.lr), options_(options) {
  TG_CHECK(options.momentum >= 0 && options.weight_decay >= 0, ValueError,
           "SGD: momentum and weight decay must be non-negative, got ", options.momentum, " and ", options.weight_decay);
  TG_CHECK(!options.nesterov || (options.momentum > 0 && options.dampening == 0), ValueError,
           "SGD: Nesterov momentum requires momentum > 0 and zero dampening");
}

void SGD::update(const std::vector<GradientOf>& gradients) {
  for (const auto& [index, grad] : gradients) {
    const Tensor& param = params()[index].param;
    const bool decay = params()[index].weight_decay;
    const SgdScalars s{options_.momentum, options_.dampening, decay ? options_.weight_decay : 0.0, options_.nesterov,
                       device_step_scalars()};
    TG_DEVICE_DISPATCH(param.device(), sgd_step, param, grad, buffer(index, 0), s);
  }
}

Adam::Adam(std::vector<ParamSpec> params, AdamOptions options) : Optimizer(std::move(params), options.lr), options_(options) {
  TG_CHECK(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1, ValueError,
           "Adam: betas must be in [0, 1), got (", options.beta1, ", ", options.beta2, ")");
  TG_CHECK(options.eps > 0 && options.weight_decay >= 0, ValueError,
           "Adam: eps must be positive and weight decay non-negative, got ", options.eps, " and ", options.weight_decay);
}

StepScalars Adam::step_scalars() const {
  const double t = static_cast<double>(step_count());
  return {lr(), 1 - std::pow(options_.beta1, t), std::sqrt(1 - std::pow(options_.beta2, t)), 0};
}

void Adam::update(const std::vector<GradientOf>& gradients) {
  // One multi-tensor update per weight-decay setting (their scalars differ), per device.
  for (bool decay : {true, false}) {
    std::vector<std::pair<Device, std::vector<AdamTensors>>> groups;
    for (const auto& [index, grad] : gradients) {
      if (params()[index].weight_decay != decay) continue;
      const Tensor& param = params()[index].param;
      auto group = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == param.device(); });
      if (group == groups.end()) group = groups.insert(groups.end(), {param.device(), {}});
      group->second.push_back({param, grad, buffer(index, 0), buffer(index, 1)});
    }
    const AdamScalars s{options_.beta1, options_.beta2, options_.eps, decay ? options_.weight_decay : 0.0,
                        options_.decoupled_weight_decay, device_step_scalars()};
    for (const auto& [device, tensors] : groups) TG_DEVICE_DISPATCH(device, adam_steps, tensors, s);
  }
}

Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm, Tensor* coefficient) {
  TG_CHECK(max_norm > 0, ValueError, "clip_grad_norm: max_norm must be positive, got ", max_norm);
  NoGradGuard no_grad;
  // Every parameter's gradient counts in the norm (a gradient shared by two parameters twice, as
  // in PyTorch); each storage is scaled once.
  std::vector<Tensor> grads, distinct;
  std::set<const void*> seen;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!grads.empty())
      TG_CHECK(g.device() == grads.front().device(), TypeError, "clip_grad_norm: expected all gradients on ",
               grads.front().device().str(), ", got one on ", g.device().str());
    if (!g.is_contiguous()) {
      g = g.raw_contiguous();
      p.set_grad(g);
    }
    grads.push_back(g);
    if (seen.insert(g.raw_data()).second) distinct.push_back(g);
  }
  if (grads.empty()) return Tensor();
  const Device device = grads.front().device();
  const Tensor norm = empty({}, DType::f32, device), coef = empty({}, DType::f32, device);
  TG_DEVICE_DISPATCH(device, clip_coefficient, grads, max_norm, norm, coef);
  TG_DEVICE_DISPATCH(device, scale_by_coefficient, distinct, coef);
  if (coefficient) *coefficient = coef;
  return norm;
}

double cosine_lr(int64_t step, int64_t total_steps, int64_t warmup_steps, double base_lr, double min_lr) {
  if (step < warmup_steps) return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const int64_t decay_steps = std::max<int64_t>(total_steps - warmup_steps, 1);
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps));
  return min_lr + 0.5 * (base_lr - min_lr) * (1 + std::cos(M_PI * progress));
}

}  // namespace tg::nn
