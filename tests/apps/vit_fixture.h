// A small ViT and a batch for the model tests (CPU and CUDA).
#pragma once

#include "apps/vit/vit.h"
#include "autograd/engine.h"
#include "ops/loss.h"
#include "tests/support/op_checks.h"

namespace tg::test {

inline vit::VitConfig small_vit_config() {
  vit::VitConfig c = vit::preset("vit-tiny");
  c.image_size = 16;
  c.patch_size = 4;
  c.depth = 2;
  c.num_classes = 10;
  return c;
}

struct VitRun {
  double loss;
  std::vector<std::pair<std::string, std::vector<double>>> grads;
};

// Forward + backward of a fresh model (seeded) on a fixed batch, on `device`.
inline VitRun run_vit(const vit::VitConfig& config, Device device, int64_t batch = 4) {
  vit::VisionTransformer model(config, device, 1234);
  const Tensor images = random_tensor({batch, config.in_channels, config.image_size, config.image_size}, 5, -1, 1,
                                      DType::f32, device);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(i % config.num_classes);
  const Tensor targets = from_vector(labels, {batch}, device);
  const Tensor loss = cross_entropy(model.forward(images), targets);
  backward(loss);
  VitRun run{loss.item(), {}};
  for (const auto& [name, p] : model.named_parameters()) run.grads.emplace_back(name, host_values(p.grad()));
  return run;
}

}  // namespace tg::test
