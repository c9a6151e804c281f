// Per-block memory plans: description, checks and installation on a model.
#include "apps/vit/plan.h"

#include <sstream>

namespace tg::vit {

bool BlockPlan::any_sampled() const {
  for (double r : ratio)
    if (r > 0) return true;
  return false;
}

std::string describe(const BlockPlan& b) {
  std::vector<std::string> parts;
  if (b.checkpoint) parts.push_back("checkpoint");
  if (b.recompute_norms) parts.push_back("norms");
  if (b.recompute_gelu) parts.push_back("gelu");
  std::string sampled;
  for (size_t t = 0; t < kPlanTargets.size(); ++t)
    if (b.sampled(t)) {
      std::ostringstream s;
      s << nn::target_name(kPlanTargets[t]) << " " << b.ratio[t];
      sampled += (sampled.empty() ? "" : ", ") + s.str();
    }
  if (!sampled.empty()) parts.push_back("wta(" + sampled + ")");
  if (parts.empty()) return "keep";
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : "+") + p;
  return out;
}

std::string describe(const MemoryPlan& plan) {
  std::ostringstream out;
  size_t first = 0;
  while (first < plan.blocks.size()) {
    size_t last = first;
    while (last + 1 < plan.blocks.size() && plan.blocks[last + 1] == plan.blocks[first]) ++last;
    out << "  block" << (last > first ? "s " : " ") << first;
    if (last > first) out << "-" << last;
    out << ": " << describe(plan.blocks[first]) << "\n";
    first = last + 1;
  }
  return out.str();
}

void check_plan(const MemoryPlan& plan, const VitConfig& config) {
  TG_CHECK(static_cast<int64_t>(plan.blocks.size()) == config.depth, ValueError, "memory plan: expected ",
           config.depth, " block plans (the model's depth), got ", plan.blocks.size());
  for (size_t b = 0; b < plan.blocks.size(); ++b) {
    const BlockPlan& block = plan.blocks[b];
    for (size_t t = 0; t < kPlanTargets.size(); ++t)
      TG_CHECK(block.ratio[t] >= 0 && block.ratio[t] <= 1, ValueError, "memory plan: block ", b, " ",
               nn::target_name(kPlanTargets[t]), ": expected a ratio in (0, 1] (0: exact), got ", block.ratio[t]);
    TG_CHECK(!(block.recompute_gelu && block.sampled(2)), ValueError, "memory plan: block ", b,
             " samples fc1 and recomputes GELU; the recomputation keeps fc1's input, so fc1 must stay exact");
  }
}

void apply_plan(VisionTransformer& model, const MemoryPlan& plan, const StrategyConfig& sampling) {
  check_plan(plan, model.config());
  uint64_t node_id = 0;
  for (size_t b = 0; b < model.blocks.size(); ++b) {
    nn::Block& block = *model.blocks[b];
    const BlockPlan& p = plan.blocks[b];
    block.set_checkpoint(p.checkpoint);
    block.set_recompute_norms(p.recompute_norms);
    block.mlp->set_recompute_gelu(p.recompute_gelu);
    for (const nn::MatmulSlot& slot : block.matmul_slots()) {
      StrategyConfig c = sampling;
      c.kind = StrategyKind::exact;
      for (size_t t = 0; t < kPlanTargets.size(); ++t)
        if (slot.target == kPlanTargets[t] && p.sampled(t)) {
          TG_CHECK(sampling.kind != StrategyKind::exact, ValueError,
                   "apply_plan: the plan samples, so the strategy must be a sampled one, got exact");
          c.kind = sampling.kind;
          c.ratio = p.ratio[t];
        }
      *slot.strategy = make_strategy(c, node_id++);
    }
  }
}

}  // namespace tg::vit
