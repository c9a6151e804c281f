// Installing backward strategies on a ViT: which layers (qkv, proj, fc1, fc2, attn-scores,
// attn-context) of which blocks get a sampled strategy. Patch embedding and head stay exact
// (WTACRS.md §4). Each (block, target) gets its own strategy object and random stream.
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

// Returns the number of nodes that got a non-exact strategy.
// Node ids are block * 6 + the target's index in nn::matmul_targets().
int64_t install_strategies(VisionTransformer& model, const StrategyConfig& config,
                           const std::set<nn::MatmulTarget>& targets, const std::set<int64_t>& blocks);

// Every strategy's state (BackwardStrategy::state_dict) as "blocks.<b>.<target>.<key>", and its
// inverse; load_strategy_state raises ValueError naming the strategy whose state is missing.
std::map<std::string, Tensor> strategy_state(const VisionTransformer& model);
void load_strategy_state(VisionTransformer& model, const std::map<std::string, Tensor>& state);

}  // namespace tg::vit
