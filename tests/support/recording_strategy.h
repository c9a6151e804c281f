// A backward strategy for tests: passes through to ExactStrategy (or to `inner`, when set) and
// records the operand shapes it is asked to save and the gradient shapes it contracts with.
// `reported_bytes`, when set, is what its saved operands report (to check that nodes report
// their strategy's number). With `keep_operands`, every save is also recorded in `calls`: a
// copy of the operand, its period, and a copy of the inner strategy's state before the save,
// so that a test can replay the save through a fresh strategy (on another device, say).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ops/matmul/exact.h"

namespace tg::test {

struct RecordingStrategy final : BackwardStrategy {
  struct Saved final : SavedOperand {
    std::unique_ptr<SavedOperand> inner;
    std::vector<Shape>* contracted;
    std::optional<size_t> reported_bytes;
    Tensor contract(const Tensor& grad, std::optional<DType> out_dtype) override {
      contracted->push_back(grad.shape());
      return inner->contract(grad, out_dtype);
    }
    ProductAndRowSums contract_with_grad_sums(const Tensor& grad, std::optional<DType> out_dtype) override {
      contracted->push_back(grad.shape());
      return inner->contract_with_grad_sums(grad, out_dtype);
    }
    size_t saved_bytes() const override { return reported_bytes.value_or(inner->saved_bytes()); }
    void saved_storages(std::vector<const Storage*>& out) const override { inner->saved_storages(out); }
  };
  struct SaveCall {
    Tensor operand;  // a copy of X [batch, K, D], on its device
    int64_t period;
    bool gradient_rows_sum_to_zero;
    std::map<std::string, Tensor> state;  // the inner strategy's state_dict() before the save, copied
  };
  std::string name() const override { return "recording"; }
  std::unique_ptr<SavedOperand> save(const Tensor& operand, int64_t period = 0,
                                     bool gradient_rows_sum_to_zero = false) override {
    saved.push_back(operand.shape());
    BackwardStrategy& target = inner ? *inner : exact;
    if (keep_operands) {
      SaveCall call{operand.detach().clone(), period, gradient_rows_sum_to_zero, {}};
      for (const auto& [key, value] : target.state_dict()) call.state[key] = value.clone();  // the proxy is live
      calls.push_back(std::move(call));
    }
    auto s = std::make_unique<Saved>();
    s->inner = target.save(operand, period, gradient_rows_sum_to_zero);
    s->contracted = &contracted;
    s->reported_bytes = reported_bytes;
    return s;
  }
  std::map<std::string, Tensor> state_dict() const override { return inner ? inner->state_dict() : exact.state_dict(); }
  ExactStrategy exact;
  std::shared_ptr<BackwardStrategy> inner;  // where saves go instead of `exact`
  bool keep_operands = false;
  std::vector<Shape> saved, contracted;
  std::optional<size_t> reported_bytes;
  std::vector<SaveCall> calls;  // with keep_operands
};

}  // namespace tg::test
