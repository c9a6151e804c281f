// matmul: the recording op and its backward node, whose operand gradients are contractions of a
// BackwardStrategy.
#include "ops/matmul/matmul.h"

#include "autograd/engine.h"
#include "ops/matmul/exact.h"
#include "ops/matmul/gemm.h"
#include "ops/precision.h"

namespace tg {

namespace {

// Operand gradients of R = op(a)·op(b), each a contraction over one dim (strategy.h):
//   dA = dR·Bᵀ : over n, X = Bᵀ [batch, N, K], G = dRᵀ  -> [batch, M, K]
//   dB = Aᵀ·dR : over m, X = A  [batch, M, K], G = dR   -> [batch, N, K] = dBᵀ
class MatmulBackward final : public Node {
 public:
  MatmulBackward(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, int64_t batch,
                 BackwardStrategy* for_grad_a, BackwardStrategy* for_grad_b, bool grad_rows_sum_to_zero)
      : Node("MatmulBackward"), trans_a_(trans_a), trans_b_(trans_b), batch_(batch) {
    // dA = dR·Bᵀ contracts over n with G = dRᵀ: its rows g_n are dR's columns, and Σ_n g_n is the
    // vector of dR's row sums, zero when the caller says every row of dR sums to zero.
    if (a.requires_grad())
      saved_bt_ = (for_grad_a ? *for_grad_a : exact_)
                      .save(batched(trans_b ? b : b.raw_transpose(-2, -1)), 0, grad_rows_sum_to_zero);
    if (b.requires_grad()) saved_a_ = (for_grad_b ? *for_grad_b : exact_).save(batched(trans_a ? a.raw_transpose(-2, -1) : a));
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const PrecisionGuard precision(policy_);  // backward GEMMs run in the forward's precision
    check_not_released();
    const Tensor g = batched(grads[0]);  // dR [batch, M, N]
    Tensor ga, gb;
    if (needs_input_grad(0)) {
      TG_INTERNAL_ASSERT(saved_bt_, "MatmulBackward: B was not saved");
      const Tensor da = saved_bt_->contract(g.raw_transpose(1, 2));
      ga = (trans_a_ ? da.raw_transpose(1, 2) : da).raw_reshape(input_metas()[0].shape);
    }
    if (needs_input_grad(1)) {
      TG_INTERNAL_ASSERT(saved_a_, "MatmulBackward: A was not saved");
      const Tensor db_t = saved_a_->contract(g);
      gb = (trans_b_ ? db_t : db_t.raw_transpose(1, 2)).raw_reshape(input_metas()[1].shape);
    }
    return {ga, gb};
  }

  size_t saved_bytes() const override {
    return (saved_a_ ? saved_a_->saved_bytes() : 0) + (saved_bt_ ? saved_bt_->saved_bytes() : 0);
  }
  void saved_storages(std::vector<const Storage*>& out) const override {
    if (saved_a_) saved_a_->saved_storages(out);
    if (saved_bt_) saved_bt_->saved_storages(out);
  }

  void release_saved() override {
    saved_a_.reset();
    saved_bt_.reset();
    Node::release_saved();
  }

 private:
  PrecisionPolicy policy_ = precision_policy();
  Tensor batched(const Tensor& x) const { return x.raw_reshape({batch_, x.size(-2), x.size(-1)}); }

  bool trans_a_, trans_b_;
  int64_t batch_;
  ExactStrategy exact_;  // the strategy when the caller gives none
  std::unique_ptr<SavedOperand> saved_a_, saved_bt_;
};

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, BackwardStrategy* for_grad_a,
              BackwardStrategy* for_grad_b, bool grad_rows_sum_to_zero) {
  Tensor out = gemm(a, trans_a, b, trans_b);
  if (should_record({&a, &b})) {
    int64_t batch = 1;  // the leading dims, already checked by gemm
    for (int64_t d = 0; d + 2 < a.dim(); ++d) batch *= a.size(d);
    record(std::make_shared<MatmulBackward>(a, b, trans_a, trans_b, batch, for_grad_a, for_grad_b,
                                            grad_rows_sum_to_zero),
           {a, b}, {out});
  }
  return out;
}

}  // namespace tg
