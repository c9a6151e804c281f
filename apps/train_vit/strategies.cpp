// Target and block selection for backward strategies.
#include "apps/train_vit/strategies.h"

#include <sstream>

namespace tg::vit {

std::set<std::string> parse_targets(const std::string& list) {
  if (list == "all") return {all_targets().begin(), all_targets().end()};
  std::set<std::string> targets;
  std::stringstream stream(list);
  std::string item;
  while (std::getline(stream, item, ',')) {
    bool known = false;
    for (const std::string& t : all_targets()) known |= t == item;
    TG_CHECK(known, ValueError, "unknown target '", item,
             "': expected a comma list of qkv, proj, fc1, fc2, attn-scores, attn-context (or all)");
    targets.insert(item);
  }
  TG_CHECK(!targets.empty(), ValueError, "empty target list: expected e.g. qkv,fc1 or all");
  return targets;
}

std::set<int64_t> parse_blocks(const std::string& list, int64_t depth) {
  std::set<int64_t> blocks;
  if (list == "all") {
    for (int64_t b = 0; b < depth; ++b) blocks.insert(b);
    return blocks;
  }
  std::stringstream stream(list);
  std::string item;
  while (std::getline(stream, item, ',')) {
    const size_t dash = item.find('-');
    try {
      const int64_t first = std::stoll(item.substr(0, dash));
      const int64_t last = dash == std::string::npos ? first : std::stoll(item.substr(dash + 1));
      TG_CHECK(first >= 0 && first <= last && last < depth, ValueError, "block range '", item,
               "' is outside the model's blocks 0-", depth - 1);
      for (int64_t b = first; b <= last; ++b) blocks.insert(b);
    } catch (const std::logic_error&) {
      TG_THROW(ValueError, "bad block list '", list, "': expected all or items like 3 and 0-5, comma separated");
    }
  }
  return blocks;
}

namespace {

// The strategy slot of `target` in `block`.
std::shared_ptr<BackwardStrategy> strategy_of(const nn::Block& block, const std::string& target) {
  if (target == "qkv") return block.attn->qkv->backward_strategy();
  if (target == "proj") return block.attn->proj->backward_strategy();
  if (target == "fc1") return block.mlp->fc1->backward_strategy();
  if (target == "fc2") return block.mlp->fc2->backward_strategy();
  if (target == "attn-scores") return block.attn->scores_strategy();
  return block.attn->context_strategy();
}

std::string strategy_name(size_t block, const std::string& target) {
  return "blocks." + std::to_string(block) + "." + target;
}

}  // namespace

std::map<std::string, Tensor> strategy_state(const VisionTransformer& model) {
  std::map<std::string, Tensor> state;
  for (size_t b = 0; b < model.blocks.size(); ++b)
    for (const std::string& target : all_targets())
      for (auto& [key, tensor] : strategy_of(*model.blocks[b], target)->state_dict())
        state[strategy_name(b, target) + "." + key] = tensor;
  return state;
}

void load_strategy_state(VisionTransformer& model, const std::map<std::string, Tensor>& state) {
  for (size_t b = 0; b < model.blocks.size(); ++b)
    for (const std::string& target : all_targets()) {
      const std::shared_ptr<BackwardStrategy> strategy = strategy_of(*model.blocks[b], target);
      if (strategy->state_dict().empty()) continue;  // stateless (exact)
      const std::string prefix = strategy_name(b, target) + ".";
      std::map<std::string, Tensor> own;
      for (auto it = state.lower_bound(prefix); it != state.end() && it->first.rfind(prefix, 0) == 0; ++it)
        own[it->first.substr(prefix.size())] = it->second;
      try {
        strategy->load_state_dict(own);
      } catch (const ValueError& e) {
        TG_THROW(ValueError, "backward strategy of ", strategy_name(b, target), ": ", e.what());
      }
    }
}

int64_t install_strategies(VisionTransformer& model, const StrategyConfig& config, const std::set<std::string>& targets,
                           const std::set<int64_t>& blocks) {
  int64_t installed = 0;
  uint64_t node_id = 0;
  for (int64_t b = 0; b < static_cast<int64_t>(model.blocks.size()); ++b) {
    nn::Block& block = *model.blocks[static_cast<size_t>(b)];
    for (const std::string& target : all_targets()) {
      const bool sampled = config.name != "exact" && blocks.count(b) == 1 && targets.count(target) == 1;
      StrategyConfig c = config;
      if (!sampled) c.name = "exact";
      auto strategy = make_strategy(c, node_id++);
      installed += sampled;
      if (target == "qkv") block.attn->qkv->set_backward_strategy(strategy);
      if (target == "proj") block.attn->proj->set_backward_strategy(strategy);
      if (target == "fc1") block.mlp->fc1->set_backward_strategy(strategy);
      if (target == "fc2") block.mlp->fc2->set_backward_strategy(strategy);
      if (target == "attn-scores") block.attn->set_scores_strategy(strategy);
      if (target == "attn-context") block.attn->set_context_strategy(strategy);
    }
  }
  return installed;
}

}  // namespace tg::vit
