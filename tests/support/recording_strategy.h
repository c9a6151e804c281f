// A backward strategy for tests: passes through to ExactStrategy and records the operand shapes
// it is asked to save and the gradient shapes it contracts with. `reported_bytes`, when set, is
// what its saved operands report (to check that nodes report their strategy's number).
#pragma once

#include <optional>
#include <vector>

#include "ops/matmul/exact.h"

namespace tg::test {

struct RecordingStrategy final : BackwardStrategy {
  struct Saved final : SavedOperand {
    std::unique_ptr<SavedOperand> inner;
    std::vector<Shape>* contracted;
    std::optional<size_t> reported_bytes;
    Tensor contract(const Tensor& grad) override {
      contracted->push_back(grad.shape());
      return inner->contract(grad);
    }
    size_t saved_bytes() const override { return reported_bytes.value_or(inner->saved_bytes()); }
  };
  std::string name() const override { return "recording"; }
  std::unique_ptr<SavedOperand> save(const Tensor& operand, int64_t = 0) override {
    saved.push_back(operand.shape());
    auto s = std::make_unique<Saved>();
    s->inner = exact.save(operand);
    s->contracted = &contracted;
    s->reported_bytes = reported_bytes;
    return s;
  }
  ExactStrategy exact;
  std::vector<Shape> saved, contracted;
  std::optional<size_t> reported_bytes;
};

}  // namespace tg::test
