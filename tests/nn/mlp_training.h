// A small MLP trained with plain SGD on a synthetic two-class problem (inside / outside a ring
// in 2-D), shared by the CPU and CUDA tests: returns the final training accuracy.
#pragma once

#include <cmath>

#include "autograd/engine.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "ops/elementwise.h"
#include "ops/loss.h"
#include "ops/reduce.h"

namespace tg::test {

inline double train_ring_mlp(Device device, int steps = 400) {
  // 512 points uniform in [-2, 2]²; class 1 inside radius 1. Points within 0.15 of the
  // boundary are pushed out so that 100% accuracy is reachable.
  Generator data(17);
  const std::vector<float> raw = rand({512, 2}, DType::f32, Device::cpu(), data, -2, 2).to_vector<float>();
  std::vector<float> points;
  std::vector<int64_t> labels;
  for (size_t i = 0; i < raw.size(); i += 2) {
    float x = raw[i], y = raw[i + 1];
    const float r = std::sqrt(x * x + y * y);
    if (std::abs(r - 1.0f) < 0.15f) {
      const float scale = (r < 1.0f ? 0.85f : 1.15f) / std::max(r, 1e-3f);
      x *= scale;
      y *= scale;
    }
    points.insert(points.end(), {x, y});
    labels.push_back(x * x + y * y < 1.0f ? 1 : 0);
  }
  const int64_t n = static_cast<int64_t>(labels.size());
  const Tensor inputs = from_vector(points, {n, 2}, device);
  const Tensor targets = from_vector(labels, {n}, device);
  Generator init(5);
  nn::Linear l1(2, 64, true, device, init), l2(64, 64, true, device, init), l3(64, 2, true, device, init);
  // timm's 0.02 init is for transformers; a small MLP trains faster from unit-scale weights.
  for (nn::Linear* l : {&l1, &l2, &l3}) nn::trunc_normal_(l->weight, 1.0 / std::sqrt(static_cast<double>(l->weight.size(1))), init);
  std::vector<nn::ParamSpec> params;
  for (nn::Linear* l : {&l1, &l2, &l3})
    for (const auto& [name, p] : l->named_parameters()) params.push_back({name, p, false});
  nn::SGD sgd(params, {0.2, 0.9, 0, 0, false});
  auto forward = [&] { return l3.forward(tanh(l2.forward(tanh(l1.forward(inputs))))); };
  for (int step = 0; step < steps; ++step) {
    sgd.zero_grad();
    backward(cross_entropy(forward(), targets));
    sgd.step();
  }
  NoGradGuard no_grad;
  const std::vector<int64_t> predicted = argmax(forward(), 1).to_vector<int64_t>();
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) correct += predicted[static_cast<size_t>(i)] == labels[static_cast<size_t>(i)];
  return static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace tg::test
