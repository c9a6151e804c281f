// Soak (issue 14): a few thousand small ViT training steps on the CPU, exact and with WTA-CRS,
// through the caching allocator. After every step the allocated bytes return to the same value
// (nothing leaks: saved tensors, strategy state, optimizer buffers made once), and the reserved
// bytes stop growing after the first steps (no creeping fragmentation).
#include <doctest/doctest.h>

#include "apps/vit/strategies.h"
#include "apps/vit/vit.h"
#include "autograd/engine.h"
#include "core/allocator.h"
#include "nn/optim.h"
#include "ops/loss.h"

using namespace tg;

namespace {

struct SoakResult {
  int64_t steps_with_other_allocated = 0;  // steps after which allocated != after the first
  int64_t reserved_growths = 0;            // steps after the warm-up that grew the reserved bytes
  int64_t allocated_after_first = 0, reserved_after_warmup = 0, reserved_at_end = 0;
};

SoakResult soak(const std::string& backward, int steps, int warmup) {
  vit::VitConfig config;
  config.image_size = 8;
  config.patch_size = 4;
  config.in_channels = 3;
  config.num_classes = 4;
  config.dim = 32;
  config.fused_attention = false;  // the sampled run samples the attention matmuls too
  config.depth = 2;
  config.heads = 2;
  vit::VisionTransformer model(config, Device::cpu(), 7);
  StrategyConfig strategy;
  strategy.kind = parse_strategy(backward);
  strategy.ratio = 0.5;
  strategy.k_min = 2;
  vit::install_strategies(model, strategy, vit::parse_targets("all"), vit::parse_blocks("all", config.depth));
  nn::Adam optimizer(nn::decay_specs(model.named_parameters(), model.no_weight_decay()), nn::adamw_options(1e-3, 0.05));
  const std::vector<Tensor> parameters = model.parameters();
  // Four fixed batches of 16, cycled.
  Generator data(3);
  std::vector<Tensor> images, labels;
  for (int b = 0; b < 4; ++b) {
    images.push_back(randn({16, 3, 8, 8}, DType::f32, Device::cpu(), data));
    labels.push_back(from_vector<int64_t>(std::vector<int64_t>(16, b % 4), {16}));
  }
  const auto all = static_cast<size_t>(StatType::all);
  SoakResult result;
  int64_t reserved_before = 0;
  for (int step = 0; step < steps; ++step) {
    {
      const Tensor loss = cross_entropy(model.forward(images[static_cast<size_t>(step % 4)]),
                                        labels[static_cast<size_t>(step % 4)], 0.1);
      tg::backward(loss);
      nn::clip_grad_norm(parameters, 1.0);
      optimizer.step();
      optimizer.zero_grad();
    }
    const MemoryStats stats = memory_stats(Device::cpu());
    const int64_t allocated = stats.allocated_bytes[all].current, reserved = stats.reserved_bytes[all].current;
    if (step == 0) result.allocated_after_first = allocated;
    else if (allocated != result.allocated_after_first) ++result.steps_with_other_allocated;
    if (step == warmup) result.reserved_after_warmup = reserved;
    if (step > warmup && reserved > reserved_before) ++result.reserved_growths;
    reserved_before = reserved;
  }
  result.reserved_at_end = reserved_before;
  return result;
}

}  // namespace

TEST_CASE("soak: 1500 exact and 1500 WTA-CRS ViT steps keep allocated bytes flat and reserved bytes bounded") {
  for (const char* backward : {"exact", "wta-crs"}) {
    CAPTURE(backward);
    const SoakResult r = soak(backward, 1500, 20);
    MESSAGE(std::string(backward) << ": allocated after each step " << r.allocated_after_first << " bytes, reserved "
                     << r.reserved_after_warmup << " -> " << r.reserved_at_end << " bytes");
    CHECK(r.allocated_after_first > 0);
    CHECK(r.steps_with_other_allocated == 0);
    CHECK(r.reserved_growths == 0);
    CHECK(r.reserved_at_end == r.reserved_after_warmup);
  }
}
