// ExactStrategy: keeps the operand itself (a view of the forward tensor, no copy), or a copy in
// the saved dtype, and forms Gᵀ·X with one batched GEMM that reads G transposed in place.
#include "ops/matmul/exact.h"

#include "ops/matmul/gemm.h"
#include "ops/precision.h"

namespace tg {

namespace {

class ExactSavedOperand final : public SavedOperand {
 public:
  explicit ExactSavedOperand(Tensor operand) : operand_(std::move(operand)) {}

  // A bf16-saved operand is converted back for the GEMM: a transient copy of this one node's X.
  Tensor contract(const Tensor& grad, std::optional<DType> out_dtype) override {
    return gemm(grad, /*trans_a=*/true, operand_.to(grad.dtype()), /*trans_b=*/false, Tensor(), out_dtype);
  }
  ProductAndRowSums contract_with_grad_sums(const Tensor& grad, std::optional<DType> out_dtype) override {
    TG_INTERNAL_ASSERT(grad.dim() == 3 && grad.size(0) == 1, "contract_with_grad_sums: G ", grad.shape().str());
    ProductAndRowSums result = gemm_with_row_sums(grad.raw_squeeze(0), /*trans_a=*/true,
                                                  operand_.to(grad.dtype()).raw_squeeze(0), /*trans_b=*/false, out_dtype);
    result.product = result.product.raw_unsqueeze(0);
    return result;
  }
  // The whole storage: sharing it with the forward tensor keeps all of it alive.
  size_t saved_bytes() const override { return operand_.storage()->nbytes(); }
  void saved_storages(std::vector<const Storage*>& out) const override { out.push_back(operand_.storage().get()); }

 private:
  Tensor operand_;
};

}  // namespace

std::string ExactStrategy::name() const { return strategy_info(StrategyKind::exact).name; }

std::unique_ptr<SavedOperand> ExactStrategy::save(const Tensor& operand, int64_t, bool) {
  TG_CHECK(operand.dim() == 3, ShapeError, "ExactStrategy: expected an operand [batch, K, D], got shape ",
           operand.shape().str());
  const Tensor kept = operand.detach();
  const std::optional<DType>& saved = precision_policy().saved_dtype;
  return std::make_unique<ExactSavedOperand>(saved ? kept.to(*saved) : kept);
}

std::shared_ptr<BackwardStrategy> make_exact_strategy(const StrategyConfig&, uint64_t) {
  return std::make_shared<ExactStrategy>();
}

}  // namespace tg
