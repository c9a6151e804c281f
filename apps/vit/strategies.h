// Installing backward strategies on a ViT: which layers (qkv, proj, fc1, fc2, attn-scores,
// attn-context) of which blocks get a sampled strategy. Patch embedding and head stay exact
// (WTACRS.md §4). Each strategy slot of a block (both operand gradients of the scores matmul
// have one) gets its own strategy object, proxy and random stream.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "apps/vit/vit.h"
#include "ops/matmul/strategy.h"

namespace tg::vit {

// "qkv,fc1" -> {qkv, fc1}; "all" -> all six (nn::matmul_targets()). ValueError naming an unknown
// target.
std::set<nn::MatmulTarget> parse_targets(const std::string& list);
// "all", "0-5,11" -> block indices below `depth`. ValueError for bad syntax or out-of-range blocks.
std::set<int64_t> parse_blocks(const std::string& list, int64_t depth);

// Whether `targets` include an attention matmul (attn-scores or attn-context): sampling those
// needs the explicit attention (VitConfig::fused_attention false).
bool includes_attention(const std::set<nn::MatmulTarget>& targets);

// Gives every matmul slot of every block (nn::Block::matmul_slots) a strategy object of its own:
// `config` for the slots of `targets` in `blocks`, exact elsewhere. Node ids (which key the
// random streams) count the slots in order: block * 7 + the slot's index. Returns the number of
// slots that got a sampled strategy. Sampling an attention target on a model with fused
// attention raises ValueError.
int64_t install_strategies(VisionTransformer& model, const StrategyConfig& config,
                           const std::set<nn::MatmulTarget>& targets, const std::set<int64_t>& blocks);

// The slots whose strategy is not exact, as they are installed: what a run really samples.
struct SampledSlot {
  int64_t block;
  std::string slot;      // "qkv", ..., "attn-scores.dq"
  std::string strategy;  // "wta-crs", ...
};
std::vector<SampledSlot> sampled_slots(const VisionTransformer& model);

// Every strategy's state (BackwardStrategy::state_dict) as "blocks.<b>.<slot>.<key>", and its
// inverse; load_strategy_state raises ValueError naming the strategy whose state is missing.
std::map<std::string, Tensor> strategy_state(const VisionTransformer& model);
void load_strategy_state(VisionTransformer& model, const std::map<std::string, Tensor>& state);

}  // namespace tg::vit
