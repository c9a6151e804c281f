// ExactStrategy: keeps the operand itself (a view of the forward tensor, no copy) and forms
// Gᵀ·X with one batched GEMM that reads G transposed in place.
#include "ops/matmul.h"

namespace tg {

namespace {

class ExactSavedOperand final : public SavedOperand {
 public:
  explicit ExactSavedOperand(Tensor operand) : operand_(std::move(operand)) {}

  Tensor contract(const Tensor& grad) override { return gemm(grad, /*trans_a=*/true, operand_, /*trans_b=*/false); }
  // The whole storage: sharing it with the forward tensor keeps all of it alive.
  size_t saved_bytes() const override { return operand_.storage()->nbytes(); }

 private:
  Tensor operand_;
};

}  // namespace

std::unique_ptr<SavedOperand> ExactStrategy::save(const Tensor& operand, int64_t) {
  TG_CHECK(operand.dim() == 3, ShapeError, "ExactStrategy: expected an operand [batch, K, D], got shape ",
           operand.shape().str());
  return std::make_unique<ExactSavedOperand>(operand.detach());
}

}  // namespace tg
