// A small ViT, a batch and a training step for the model tests (CPU and CUDA), and recorders
// around sampled strategies on every target.
#pragma once

#include "apps/vit/vit.h"
#include "autograd/engine.h"
#include "ops/loss.h"
#include "tests/support/op_checks.h"
#include "tests/support/recording_strategy.h"

namespace tg::test {

inline vit::VitConfig small_vit_config() {
  vit::VitConfig c = vit::preset("vit-tiny");
  c.image_size = 16;
  c.patch_size = 4;
  c.depth = 2;
  c.num_classes = 10;
  return c;
}

// `c` with the explicit attention, which sampling the attention matmuls needs.
inline vit::VitConfig with_explicit_attention(vit::VitConfig c) {
  c.fused_attention = false;
  return c;
}

struct VitRun {
  double loss;
  std::vector<std::pair<std::string, std::vector<double>>> grads;  // f64 host copies, by parameter
};

// A fixed batch for `config`: uniform images in [-1, 1) and labels b % classes, on `device`.
struct VitBatch {
  Tensor images, targets;
};
inline VitBatch vit_batch(const vit::VitConfig& config, Device device, int64_t batch = 4) {
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(i % config.num_classes);
  return {random_tensor({batch, config.in_channels, config.image_size, config.image_size}, 5, -1, 1, DType::f32, device),
          from_vector(labels, {batch}, device)};
}

// One forward + backward of `model` on `batch` (the gradients are cleared first).
inline VitRun vit_step(const vit::VisionTransformer& model, const VitBatch& batch) {
  zero_grad(model.parameters());
  const Tensor loss = cross_entropy(model.forward(batch.images), batch.targets);
  backward(loss);
  VitRun run{loss.item(), {}};
  for (const auto& [name, p] : model.named_parameters()) run.grads.emplace_back(name, host_values(p.grad()));
  return run;
}

// Forward + backward of a fresh model (seeded) on the fixed batch, on `device`.
inline VitRun run_vit(const vit::VitConfig& config, Device device, int64_t batch = 4) {
  const vit::VisionTransformer model(config, device, 1234);
  return vit_step(model, vit_batch(config, device, batch));
}

// Every matmul slot of every block gets a recorder around its own strategy from `config` (node
// id block * 7 + slot index, as vit::install_strategies numbers them), which copies each operand
// it is asked to save and the strategy's state before that save.
inline std::vector<std::shared_ptr<RecordingStrategy>> install_recorders(vit::VisionTransformer& model,
                                                                         const StrategyConfig& config) {
  std::vector<std::shared_ptr<RecordingStrategy>> recorders;
  uint64_t node = 0;
  for (const auto& block : model.blocks)
    for (const nn::MatmulSlot& slot : block->matmul_slots()) {
      auto recorder = std::make_shared<RecordingStrategy>();
      recorder->inner = make_strategy(config, node++);
      recorder->keep_operands = true;
      *slot.strategy = recorder;
      recorders.push_back(recorder);
    }
  return recorders;
}

}  // namespace tg::test
