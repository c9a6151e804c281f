// Backward strategies of the matmul nodes (DESIGN.md §5, WTACRS.md).
//
// Every weight/operand gradient of a matmul is a contraction over one dimension:
//   linear  Y = X·Wᵀ        dW  = dYᵀ·X              (over the N rows of X and dY)
//   bmm     R = A·B         dB  = Aᵀ·dR  = (dRᵀ·A)ᵀ  (over the m rows of A and dR)
//                           dA  = dR·Bᵀ  = (dRᵀ)ᵀ·Bᵀ  (over the n columns of B and dR)
// so each is  C = Gᵀ·X = Σ_k g_kᵀ x_k  for an operand X [batch, K, D] saved in forward and a
// gradient G [batch, K, E] known in backward (C is [batch, E, D]). A strategy decides, in
// forward, what of X to keep (all of it, or sampled rows with weights), and in backward forms
// C from what it kept: exactly, or as an unbiased estimate.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/matmul/gemm.h"

namespace tg {

// What a strategy kept of one operand for one forward pass.
class SavedOperand {
 public:
  virtual ~SavedOperand() = default;
  // Gᵀ·X (or its estimate) for G [batch, K, E]: [batch, E, D] in `out_dtype`, which is G's
  // dtype (nullopt) or f32 for a bf16 G (mixed precision's f32 weights: the GEMM's accumulator
  // stored unrounded, no cast pass).
  virtual Tensor contract(const Tensor& grad, std::optional<DType> out_dtype = std::nullopt) = 0;
  // For one item (G [1, K, E]): contract()'s product [1, E, D] and the exact Σ_k g_k [E] (a
  // linear's bias gradient), both in `out_dtype`. The exact strategy forms the sums in the same
  // GEMM's epilogue, while it reads G; the default contracts and sums apart.
  virtual ProductAndRowSums contract_with_grad_sums(const Tensor& grad, std::optional<DType> out_dtype);
  // Called by a node that will contract with `grad` after other work of its backward (a linear's
  // dX GEMM): a strategy may start what the contraction needs of G beside that work. Nothing by
  // default.
  virtual void prepare(const Tensor& grad) { (void)grad; }
  // Bytes this object keeps alive for backward (the report's "saved bytes").
  virtual size_t saved_bytes() const = 0;
  // Appends the storages behind saved_bytes() (Node::saved_storages).
  virtual void saved_storages(std::vector<const Storage*>& out) const = 0;
};

// Per-node strategy object: lives as long as the layer (it may keep state across steps, such
// as the gradient-norm proxy of WTA-CRS) and produces a SavedOperand for every forward.
class BackwardStrategy {
 public:
  virtual ~BackwardStrategy() = default;
  virtual std::string name() const = 0;
  // Called in forward (with grad recording on) for an operand X [batch, K, D] contracted over K.
  // `period` > 0 says that row k holds token position k % period (a linear over [B, T, D]
  // inputs sees its B·T rows as one contraction: period T); 0 means position k.
  // `gradient_rows_sum_to_zero` says that every G this operand will meet has Σ_k g_k = 0 (the
  // scores' gradient through softmax, for dQ): then Gᵀ·X = Gᵀ·(X − 1·μᵀ) for any μ, and a
  // sampled strategy keeps rows of X centred over K, which removes a component common to all
  // rows from its variance (WTACRS.md §4). The exact result does not change.
  virtual std::unique_ptr<SavedOperand> save(const Tensor& operand, int64_t period = 0,
                                             bool gradient_rows_sum_to_zero = false) = 0;

  // State carried from step to step (e.g. WTA-CRS's step counter and gradient-norm proxy), for
  // checkpoints: a resumed run continues bit for bit. Stateless strategies have none.
  virtual std::map<std::string, Tensor> state_dict() const { return {}; }
  // Restores state_dict()'s tensors (on any device); ValueError for a missing or malformed key.
  virtual void load_state_dict(const std::map<std::string, Tensor>& state) { (void)state; }
};

// The strategies there are, one row each in the table strategy_table() (strategy.cpp), which
// the command lines, the benchmarks, the docs and the tests all read.
enum class StrategyKind {
  exact,    // keep X, contract exactly (exact.h)
  wta_crs,  // winners plus importance-weighted draws: unbiased (sampled.h)
  crs,      // importance-weighted draws only: unbiased (sampled.h)
  topk,     // the k largest scores with weight 1: biased, for ablations (sampled.h)
  wta_wor,  // take-all rows plus systematic sampling without replacement: k distinct rows, unbiased (sampled.h)
};

// The gradient-norm proxy that sampled strategies multiply ||x_i|| by (WTACRS.md §3).
enum class ProxyKind {
  position_ema,  // EMA of ||g|| per token position from earlier backward passes
  none,          // p ∝ ||x_i|| alone
};

// Everything that selects and configures a strategy (the command line's --backward, --ratio, ...).
// What the strategies keep is stored in the PrecisionPolicy's saved dtype (ops/precision.h).
struct StrategyConfig {
  StrategyKind kind = StrategyKind::exact;
  double ratio = 1.0;   // rho in (0, 1]: the budget k = min(max(floor(rho N), k_min), N)
  int64_t k_min = 10;
  double alpha = 0.05;  // share of the uniform term in the sampling probabilities
  ProxyKind proxy = ProxyKind::position_ema;
  double ema_beta = 0.9;
  uint64_t seed = 0;
};

// One row of the strategy table: its name on command lines and in reports, a one-line summary
// for --help and the docs, and the factory for one node (`node_id` keys its random stream,
// with the seed and the step).
struct StrategyInfo {
  StrategyKind kind;
  const char* name;
  const char* summary;
  std::shared_ptr<BackwardStrategy> (*make)(const StrategyConfig& config, uint64_t node_id);
};

// Every strategy, in the order of the enum.
const std::vector<StrategyInfo>& strategy_table();
const StrategyInfo& strategy_info(StrategyKind kind);
// The names in table order: {"exact", "wta-crs", "crs", "topk", "wta-wor"}.
std::vector<std::string> strategy_names();
// The kind called `name`; ValueError listing the table's names otherwise.
StrategyKind parse_strategy(const std::string& name);

// The proxies' names ("position-ema", "none"), likewise.
const char* proxy_name(ProxyKind proxy);
std::vector<std::string> proxy_names();
ProxyKind parse_proxy(const std::string& name);

// "a, b, c or d": a list of names for messages and --help.
std::string join_names(const std::vector<std::string>& names, const char* last_separator = " or ");

// A new strategy object for one node, from the table. ValueError for a ratio outside (0, 1] or
// another parameter out of range.
std::shared_ptr<BackwardStrategy> make_strategy(const StrategyConfig& config, uint64_t node_id);

}  // namespace tg
