// The strategy table (one row per strategy: name, summary, factory), name parsing, the checked
// factory that every caller uses, and SavedOperand's default contraction with gradient sums.
#include "ops/matmul/strategy.h"

#include "ops/matmul/exact.h"
#include "ops/matmul/sampled.h"
#include "ops/reduce.h"

namespace tg {

ProductAndRowSums SavedOperand::contract_with_grad_sums(const Tensor& grad, std::optional<DType> out_dtype) {
  TG_INTERNAL_ASSERT(grad.dim() == 3 && grad.size(0) == 1, "contract_with_grad_sums: G ", grad.shape().str());
  return {contract(grad, out_dtype), sum_to(grad, Shape({grad.size(2)}), out_dtype)};
}

namespace {

const std::vector<const char*>& proxy_table() {
  static const std::vector<const char*> names = {"position-ema", "none"};  // ProxyKind order
  return names;
}

}  // namespace

const std::vector<StrategyInfo>& strategy_table() {
  static const std::vector<StrategyInfo> table = {
      {StrategyKind::exact, "exact", "keep the operand, exact GEMM gradients", make_exact_strategy},
      {StrategyKind::wta_crs, "wta-crs", "winner-take-all column-row sampling (unbiased)", make_sampling_strategy},
      {StrategyKind::crs, "crs", "column-row sampling, draws only (unbiased)", make_sampling_strategy},
      {StrategyKind::topk, "topk", "the k largest rows with weight 1 (biased; ablation)", make_sampling_strategy},
      {StrategyKind::wta_wor, "wta-wor",
       "take-all rows plus systematic sampling without replacement: k distinct rows (unbiased)",
       make_sampling_strategy},
  };
  return table;
}

const StrategyInfo& strategy_info(StrategyKind kind) {
  const auto index = static_cast<size_t>(kind);
  TG_INTERNAL_ASSERT(index < strategy_table().size() && strategy_table()[index].kind == kind,
                     "strategy_table: row ", index, " is out of enum order");
  return strategy_table()[index];
}

std::vector<std::string> strategy_names() {
  std::vector<std::string> names;
  for (const StrategyInfo& info : strategy_table()) names.push_back(info.name);
  return names;
}

StrategyKind parse_strategy(const std::string& name) {
  for (const StrategyInfo& info : strategy_table())
    if (name == info.name) return info.kind;
  TG_THROW(ValueError, "unknown backward strategy '", name, "': expected ", join_names(strategy_names()));
}

const char* proxy_name(ProxyKind proxy) { return proxy_table()[static_cast<size_t>(proxy)]; }

std::vector<std::string> proxy_names() { return {proxy_table().begin(), proxy_table().end()}; }

ProxyKind parse_proxy(const std::string& name) {
  for (size_t i = 0; i < proxy_table().size(); ++i)
    if (name == proxy_table()[i]) return static_cast<ProxyKind>(i);
  TG_THROW(ValueError, "backward strategy: unknown proxy '", name, "': expected ", join_names(proxy_names()));
}

std::string join_names(const std::vector<std::string>& names, const char* last_separator) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? last_separator : ", ";
    out += names[i];
  }
  return out;
}

std::shared_ptr<BackwardStrategy> make_strategy(const StrategyConfig& config, uint64_t node_id) {
  TG_CHECK(config.ratio > 0 && config.ratio <= 1, ValueError, "backward strategy: ratio must be in (0, 1], got ",
           config.ratio);
  TG_CHECK(config.k_min >= 1, ValueError, "backward strategy: k_min must be at least 1, got ", config.k_min);
  TG_CHECK(config.alpha >= 0 && config.alpha < 1, ValueError, "backward strategy: alpha must be in [0, 1), got ",
           config.alpha);
  TG_CHECK(config.ema_beta >= 0 && config.ema_beta < 1, ValueError,
           "backward strategy: ema_beta must be in [0, 1), got ", config.ema_beta);
  return strategy_info(config.kind).make(config, node_id);
}

}  // namespace tg
