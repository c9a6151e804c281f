// linear: checks, the forward GEMM with fused bias, and the backward node (dX and db exact,
// dW through the backward strategy over the N = batch × tokens rows).
#include "ops/matmul/linear.h"

#include "autograd/engine.h"
#include "ops/dispatch.h"
#include "ops/matmul/exact.h"
#include "ops/matmul/gemm.h"
#include "ops/precision.h"
#include "ops/reduce.h"

namespace tg {

namespace {

void check_linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_same_device_dtype("linear", x, {&weight, &bias});
  TG_CHECK(is_floating(x.dtype()), TypeError, "linear: expected a floating dtype, got ", dtype_name(x.dtype()));
  TG_CHECK(weight.dim() == 2, ShapeError, "linear: weight must be 2-D [out_features, in_features], got shape ",
           weight.shape().str());
  TG_CHECK(x.dim() >= 1, ShapeError, "linear: input must be [..., in_features], got a 0-d tensor");
  TG_CHECK(x.size(-1) == weight.size(1), ShapeError, "linear: input has ", x.size(-1), " features (shape ",
           x.shape().str(), ") but weight expects ", weight.size(1), " (shape ", weight.shape().str(), ")");
  TG_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), ShapeError,
           "linear: bias must have shape [", weight.size(0), "] (out_features of weight ", weight.shape().str(),
           "), got ", bias.defined() ? bias.shape().str() : "");
}

// x [..., D] as the matrix of its rows, [N, D].
Tensor rows_of(const Tensor& x) {
  const Shape& s = x.shape();
  const int64_t rows = Shape(std::vector<int64_t>(s.begin(), s.end() - 1)).numel();
  return x.raw_reshape({rows, x.size(-1)});
}

class LinearBackward final : public Node {
 public:
  // `x_rows` is x as [N, D_in].
  LinearBackward(const Tensor& x, const Tensor& x_rows, const Tensor& weight, BackwardStrategy* strategy)
      : Node("LinearBackward") {
    // dX needs only W, a parameter: keeping its handle costs no activation memory.
    if (x.requires_grad()) weight_slot_ = save(weight);
    // dW = dYᵀ·X is a contraction over the rows: the strategy decides what of X to keep.
    // Rows of a [B, T, D] input hold token positions t = row % T (the strategy's proxy is per position).
    const int64_t period = x.dim() >= 3 ? x.size(-2) : 0;
    if (weight.requires_grad()) saved_x_ = (strategy ? *strategy : exact_).save(x_rows.raw_unsqueeze(0), period);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const PrecisionGuard precision(policy_);  // backward GEMMs run in the forward's precision
    check_not_released();
    const Tensor g = rows_of(grads[0]);  // dY [N, D_out]
    Tensor gx, gw, gb;
    if (needs_input_grad(0)) gx = gemm(g, false, saved(weight_slot_), false).raw_reshape(input_metas()[0].shape);
    if (needs_input_grad(1)) {
      TG_INTERNAL_ASSERT(saved_x_, "LinearBackward: X was not saved");
      gw = saved_x_->contract(g.raw_unsqueeze(0)).raw_squeeze(0);
    }
    if (needs_input_grad(2)) gb = sum_to(g, input_metas()[2].shape);
    return {gx, gw, gb};
  }

  // Only what the strategy keeps of X counts: the weight is a parameter, alive anyway.
  size_t saved_bytes() const override { return saved_x_ ? saved_x_->saved_bytes() : 0; }

  void release_saved() override {
    saved_x_.reset();
    Node::release_saved();
  }

 private:
  PrecisionPolicy policy_ = precision_policy();
  ExactStrategy exact_;  // the strategy when the caller gives none
  size_t weight_slot_ = 0;
  std::unique_ptr<SavedOperand> saved_x_;
};

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, BackwardStrategy* strategy) {
  check_linear(x, weight, bias);
  const Tensor x_rows = rows_of(x);
  Shape out_shape = x.shape();
  out_shape[out_shape.ndim() - 1] = weight.size(0);
  Tensor out = gemm(x_rows, false, weight, /*trans_b=*/true, bias).raw_view(out_shape);
  if (should_record({&x, &weight, &bias}))
    record(std::make_shared<LinearBackward>(x, x_rows, weight, strategy), {x, weight, bias}, {out});
  return out;
}

}  // namespace tg
