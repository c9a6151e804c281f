// Module tree traversal and state-dict loading.
#include "nn/module.h"

#include <set>

#include "autograd/grad_mode.h"

namespace tg::nn {

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  for (const auto& [existing, _] : parameters_)
    TG_CHECK(existing != name, ValueError, "register_parameter: '", name, "' is already registered");
  value.set_requires_grad(true);
  parameters_.emplace_back(name, value);
  return value;
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, tensor] : parameters_) out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [_, tensor] : named_parameters()) out.push_back(tensor);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& t : parameters()) n += t.numel();
  return n;
}

void Module::train(bool training) {
  training_ = training;
  for (auto& [_, child] : children_) child->train(training);
}

void Module::to(Device device, DType dtype) {
  for (auto& [_, tensor] : parameters_) {
    if (tensor.device() == device && tensor.dtype() == dtype) continue;
    // Layers hold the same handle (a shared TensorImpl): swap the new storage into that impl
    // instead of replacing the handle.
    const Tensor moved = tensor.to(dtype).to(device).raw_contiguous();
    TensorImpl* impl = tensor.impl();
    impl->storage = moved.storage();
    impl->device = device;
    impl->dtype = dtype;
    impl->offset = moved.offset();
    impl->strides = moved.strides();
  }
  for (auto& [_, child] : children_) child->to(device, dtype);
}

StateDict Module::state_dict() const {
  StateDict state;
  for (auto& [name, tensor] : named_parameters()) state[name] = tensor.detach();
  return state;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  const auto params = named_parameters();
  std::set<std::string> expected;
  for (const auto& [name, tensor] : params) {
    expected.insert(name);
    auto it = state.find(name);
    if (it == state.end()) {
      TG_CHECK(!strict, ValueError, "load_state_dict: missing key '", name, "' (expected shape ",
               tensor.shape().str(), ")");
      continue;
    }
    const Tensor& value = it->second;
    TG_CHECK(value.shape() == tensor.shape(), ShapeError, "load_state_dict: key '", name, "' has shape ",
             value.shape().str(), " in the state dict, but the model expects ", tensor.shape().str());
    TG_CHECK(value.dtype() == tensor.dtype(), TypeError, "load_state_dict: key '", name, "' has dtype ",
             dtype_name(value.dtype()), " in the state dict, but the model expects ", dtype_name(tensor.dtype()),
             " (shape ", tensor.shape().str(), ")");
    NoGradGuard no_grad;
    tensor.copy_(value);
  }
  if (strict) {
    for (const auto& [name, value] : state)
      TG_CHECK(expected.count(name) == 1, ValueError, "load_state_dict: unexpected key '", name, "' (shape ",
               value.shape().str(), ") is not a parameter of the model");
  }
}

}  // namespace tg::nn
