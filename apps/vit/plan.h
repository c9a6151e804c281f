// A per-block memory plan of the ViT: for every transformer block, which of the exact memory
// techniques it uses (checkpointing, LayerNorm-output recomputation, GELU recomputation) and
// which of its four linears keep WTA-CRS-sampled rows instead of their whole input, with what
// ratio. The memory model (memory_model.h) predicts a plan's peak, the planner (planner.h)
// chooses one, and apply_plan installs it on a model (nn::Block / nn::Mlp setters and the
// strategy slots), so that what is predicted is what runs.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "apps/vit/vit.h"
#include "ops/matmul/strategy.h"

namespace tg::vit {

// The four linears of a block that a plan may sample, in nn::MatmulTarget order.
inline constexpr std::array<nn::MatmulTarget, 4> kPlanTargets = {nn::MatmulTarget::qkv, nn::MatmulTarget::proj,
                                                                  nn::MatmulTarget::fc1, nn::MatmulTarget::fc2};

struct BlockPlan {
  bool checkpoint = false;       // nn::Block::set_checkpoint: keep the input only, rerun in backward
  bool recompute_norms = false;  // nn::Block::set_recompute_norms: qkv and fc1 recompute the LN outputs
  bool recompute_gelu = false;   // nn::Mlp::set_recompute_gelu: fc1+GELU recomputes fc1's output
  // WTA-CRS ratio per target of kPlanTargets (qkv, proj, fc1, fc2); 0: exact.
  std::array<double, 4> ratio = {0, 0, 0, 0};

  bool sampled(size_t target) const { return ratio[target] > 0; }
  bool any_sampled() const;
  bool operator==(const BlockPlan&) const = default;
};

struct MemoryPlan {
  std::vector<BlockPlan> blocks;
  bool operator==(const MemoryPlan&) const = default;
};

// "keep" for a plain block, else "+"-joined techniques: "checkpoint+norms+gelu+wta(fc2 0.3)".
std::string describe(const BlockPlan& block);
// One line per run of consecutive blocks with the same plan: "  blocks 0-3: checkpoint\n".
std::string describe(const MemoryPlan& plan);

// ValueError when `plan` does not fit `config` (block count) or combines what the layers refuse:
// a sampled fc1 with GELU recomputation (its input is kept for the recomputation), a ratio
// outside [0, 1].
void check_plan(const MemoryPlan& plan, const VitConfig& config);

// Installs `plan` on `model`: per block the checkpoint, norm and GELU recomputation flags, and a
// WTA-CRS strategy (`sampling` with the block's ratio; its kind must be a sampled one) on each
// sampled linear, exact elsewhere. Node ids count the slots as install_strategies does (block * 7
// + slot), so a uniform plan draws the same samples as the train_vit flags that describe it.
void apply_plan(VisionTransformer& model, const MemoryPlan& plan, const StrategyConfig& sampling);

}  // namespace tg::vit
