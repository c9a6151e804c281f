// Target and block selection for backward strategies, and their installation and state.
#include "apps/vit/strategies.h"

#include <algorithm>
#include <sstream>

namespace tg::vit {

std::set<nn::MatmulTarget> parse_targets(const std::string& list) {
  std::set<nn::MatmulTarget> targets;
  if (list == "all") {
    for (const nn::MatmulTargetInfo& info : nn::matmul_targets()) targets.insert(info.target);
    return targets;
  }
  std::stringstream stream(list);
  std::string item;
  while (std::getline(stream, item, ',')) {
    const auto& table = nn::matmul_targets();
    const auto it = std::find_if(table.begin(), table.end(), [&](const auto& info) { return item == info.name; });
    if (it == table.end()) {
      std::vector<std::string> names;
      for (const nn::MatmulTargetInfo& info : table) names.push_back(info.name);
      TG_THROW(ValueError, "unknown target '", item, "': expected a comma list of ", join_names(names, ", "), " (or all)");
    }
    targets.insert(it->target);
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

std::string slot_key(size_t block, const nn::MatmulSlot& slot) {
  return "blocks." + std::to_string(block) + "." + slot.name;
}

}  // namespace

std::map<std::string, Tensor> strategy_state(const VisionTransformer& model) {
  std::map<std::string, Tensor> state;
  for (size_t b = 0; b < model.blocks.size(); ++b)
    for (const nn::MatmulSlot& slot : model.blocks[b]->matmul_slots())
      for (auto& [key, tensor] : (*slot.strategy)->state_dict()) state[slot_key(b, slot) + "." + key] = tensor;
  return state;
}

void load_strategy_state(VisionTransformer& model, const std::map<std::string, Tensor>& state) {
  for (size_t b = 0; b < model.blocks.size(); ++b)
    for (const nn::MatmulSlot& slot : model.blocks[b]->matmul_slots()) {
      BackwardStrategy& strategy = **slot.strategy;
      if (strategy.state_dict().empty()) continue;  // stateless (exact)
      const std::string prefix = slot_key(b, slot) + ".";
      std::map<std::string, Tensor> own;
      for (auto it = state.lower_bound(prefix); it != state.end() && it->first.rfind(prefix, 0) == 0; ++it)
        own[it->first.substr(prefix.size())] = it->second;
      try {
        strategy.load_state_dict(own);
      } catch (const ValueError& e) {
        TG_THROW(ValueError, "backward strategy of ", slot_key(b, slot), ": ", e.what());
      }
    }
}

bool includes_attention(const std::set<nn::MatmulTarget>& targets) {
  return targets.count(nn::MatmulTarget::attn_scores) + targets.count(nn::MatmulTarget::attn_context) > 0;
}

int64_t install_strategies(VisionTransformer& model, const StrategyConfig& config,
                           const std::set<nn::MatmulTarget>& targets, const std::set<int64_t>& blocks) {
  int64_t installed = 0;
  uint64_t node_id = 0;
  for (int64_t b = 0; b < static_cast<int64_t>(model.blocks.size()); ++b)
    for (const nn::MatmulSlot& slot : model.blocks[static_cast<size_t>(b)]->matmul_slots()) {
      const bool sampled =
          config.kind != StrategyKind::exact && blocks.count(b) == 1 && targets.count(slot.target) == 1;
      TG_CHECK(!sampled || !includes_attention({slot.target}) || !model.config().fused_attention, ValueError,
               "the attention matmuls (", nn::target_name(slot.target),
               ") can only be sampled with the explicit attention (VitConfig::fused_attention false, train_vit "
               "--attention explicit); the fused attention has no matmul nodes");
      StrategyConfig c = config;
      if (!sampled) c.kind = StrategyKind::exact;
      *slot.strategy = make_strategy(c, node_id++);
      installed += sampled;
    }
  return installed;
}

std::vector<SampledSlot> sampled_slots(const VisionTransformer& model) {
  std::vector<SampledSlot> out;
  for (size_t b = 0; b < model.blocks.size(); ++b)
    for (const nn::MatmulSlot& slot : model.blocks[b]->matmul_slots())
      if (const std::string name = (*slot.strategy)->name(); name != strategy_info(StrategyKind::exact).name)
        out.push_back({static_cast<int64_t>(b), slot.name, name});
  return out;
}

}  // namespace tg::vit
