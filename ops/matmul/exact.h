// ExactStrategy: the exact backward of a matmul node. It keeps the operand X itself (or a copy
// in the precision policy's saved dtype) and forms Gᵀ·X with one batched GEMM.
#pragma once

#include "ops/matmul/strategy.h"

namespace tg {

// Saves X as it is (no copy: the node shares the forward tensor) and contracts with one
// batched GEMM. When the policy's saved dtype differs from X's (bf16 for f32 X) it keeps a
// converted copy instead, so the forward tensor can die, and converts it back for the GEMM in
// backward.
class ExactStrategy final : public BackwardStrategy {
 public:
  std::string name() const override;
  std::unique_ptr<SavedOperand> save(const Tensor& operand, int64_t period = 0) override;
};

// The factory of the strategy table's "exact" row.
std::shared_ptr<BackwardStrategy> make_exact_strategy(const StrategyConfig& config, uint64_t node_id);

}  // namespace tg
