// An exponential moving average of a model's weights, timm's ModelEmaV2: after every optimizer
// step, ema = decay * ema + (1 - decay) * w for each tensor of the state dict. The average lives
// in a second module of the same structure (the caller builds it), so evaluating the EMA is a
// forward of that module and saving it is its state dict. Costs one copy of the weights.
#pragma once

#include <utility>
#include <vector>

#include "nn/module.h"

namespace tg::nn {

class ModelEma {
 public:
  // Pairs the tensors of `average` and `model` by name: the keys, shapes and dtypes must agree
  // (ValueError / ShapeError naming the key otherwise); decay in [0, 1) (ValueError). The
  // average's values are left as they are: the caller copies the model in when the EMA starts
  // (timm copies it at creation, after loading any pretrained weights) or loads a saved EMA.
  // Both modules' tensors are held, so they must stay their parameters.
  ModelEma(Module& average, const Module& model, double decay);

  // ema = decay * ema + (1 - decay) * w for every pair; not recorded.
  void update();
  double decay() const { return decay_; }

 private:
  std::vector<std::pair<Tensor, Tensor>> pairs_;  // (average's tensor, model's tensor)
  double decay_;
};

}  // namespace tg::nn
