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

#include "core/tensor.h"

namespace tg {

// What a strategy kept of one operand for one forward pass.
class SavedOperand {
 public:
  virtual ~SavedOperand() = default;
  // Gᵀ·X (or its estimate) for G [batch, K, E]; returns [batch, E, D] in X's dtype.
  virtual Tensor contract(const Tensor& grad) = 0;
  // Bytes this object keeps alive for backward (the report's "saved bytes").
  virtual size_t saved_bytes() const = 0;
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
  virtual std::unique_ptr<SavedOperand> save(const Tensor& operand, int64_t period = 0) = 0;

  // State carried from step to step (e.g. WTA-CRS's step counter and gradient-norm proxy), for
  // checkpoints: a resumed run continues bit for bit. Stateless strategies have none.
  virtual std::map<std::string, Tensor> state_dict() const { return {}; }
  // Restores state_dict()'s tensors (on any device); ValueError for a missing or malformed key.
  virtual void load_state_dict(const std::map<std::string, Tensor>& state) { (void)state; }
};

// Saves X as it is (no copy: the node shares the forward tensor) and contracts with one
// batched GEMM. With a saved dtype other than X's (bf16 for f32 X) it keeps a converted copy
// instead, so the forward tensor can die, and converts it back for the GEMM in backward.
class ExactStrategy final : public BackwardStrategy {
 public:
  explicit ExactStrategy(std::optional<DType> saved_dtype = std::nullopt) : saved_dtype_(saved_dtype) {}
  std::string name() const override { return "exact"; }
  std::unique_ptr<SavedOperand> save(const Tensor& operand, int64_t period = 0) override;

 private:
  std::optional<DType> saved_dtype_;
};

// Everything that selects and configures a strategy (the command line's --backward, --ratio, ...).
struct StrategyConfig {
  std::string name = "exact";  // exact | wta-crs | crs | topk
  double ratio = 1.0;          // rho in (0, 1]: the budget k = min(max(floor(rho N), k_min), N)
  int64_t k_min = 10;
  double alpha = 0.05;         // share of the uniform term in the sampling probabilities
  std::string proxy = "position-ema";  // gradient-norm proxy: position-ema | none
  double ema_beta = 0.9;
  uint64_t seed = 0;
  // What a node keeps of its operand (all of it or the sampled rows) is stored in: "same" (the
  // operand's dtype) or "bf16" (half the bytes of f32; converted back for the backward GEMM).
  std::string saved_dtype = "same";
};

// The dtype StrategyConfig::saved_dtype names: nullopt for "same". ValueError for other names.
std::optional<DType> saved_dtype(const StrategyConfig& config);

// A new strategy object for one node; `node_id` keys its random stream (with the seed and the
// step). ValueError for an unknown name, proxy or a ratio outside (0, 1].
std::shared_ptr<BackwardStrategy> make_strategy(const StrategyConfig& config, uint64_t node_id);

}  // namespace tg
