// Module: a tree of named children and parameters (names like timm's, "blocks.0.attn.qkv.weight"),
// train/eval mode, and state dicts that load with exact checks (missing or unexpected keys, shape
// or dtype mismatches fail naming the key and both shapes).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace tg::nn {

using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  virtual ~Module() = default;

  // Parameters of this module and its children, depth-first in registration order.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;

  void train(bool training = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves every parameter (keeping requires_grad) to `device`, converting it to `dtype`; the
  // parameter handles the layers hold stay valid.
  void to(Device device, DType dtype = DType::f32);

  StateDict state_dict() const;
  // Copies values into the existing parameters (any device; shape and dtype must match).
  // strict: every key must match both ways.
  void load_state_dict(const StateDict& state, bool strict = true);

 protected:
  // Registers a leaf tensor as a parameter (requires_grad set) and returns it.
  Tensor register_parameter(const std::string& name, Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    children_.emplace_back(name, module);
    return module;
  }

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;

  bool training_ = true;
  std::vector<std::pair<std::string, Tensor>> parameters_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace tg::nn
