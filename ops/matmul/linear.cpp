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
  // `x_rows` is x as [N, D_in]; `weight` is the parameter, `params` what the GEMMs use.
  LinearBackward(const Tensor& x, const Tensor& x_rows, const Tensor& weight, const LinearParameters& params,
                 BackwardStrategy* strategy)
      : Node("LinearBackward"), gradient_dtype_(params.gradient_dtype) {
    // dX needs only W, a parameter (or its bf16 copy, which the forward made anyway): no
    // activation memory.
    if (x.requires_grad()) weight_slot_ = save(params.weight);
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
    if (needs_input_grad(1)) saved_x_->prepare(g.raw_unsqueeze(0));  // e.g. the sampled rows of G, beside dX's GEMM
    if (needs_input_grad(0)) gx = gemm(g, false, saved(weight_slot_), false).raw_reshape(input_metas()[0].shape);
    if (needs_input_grad(1)) {
      TG_INTERNAL_ASSERT(saved_x_, "LinearBackward: X was not saved");
      if (needs_input_grad(2)) {  // db from dW's GEMM
        ProductAndRowSums both = saved_x_->contract_with_grad_sums(g.raw_unsqueeze(0), gradient_dtype_);
        gw = both.product.raw_squeeze(0);
        gb = both.row_sums.raw_reshape(input_metas()[2].shape);
      } else {
        gw = saved_x_->contract(g.raw_unsqueeze(0), gradient_dtype_).raw_squeeze(0);
      }
    } else if (needs_input_grad(2)) {
      gb = sum_to(g, input_metas()[2].shape, gradient_dtype_);
    }
    return {gx, gw, gb};
  }

  // Only what the strategy keeps of X counts: the weight is a parameter, alive anyway.
  size_t saved_bytes() const override { return saved_x_ ? saved_x_->saved_bytes() : 0; }
  void saved_storages(std::vector<const Storage*>& out) const override {
    if (saved_x_) saved_x_->saved_storages(out);
  }

  void release_saved() override {
    saved_x_.reset();
    Node::release_saved();
  }

 private:
  PrecisionPolicy policy_ = precision_policy();
  std::optional<DType> gradient_dtype_;  // of dW and db (linear_parameters)
  ExactStrategy exact_;  // the strategy when the caller gives none
  size_t weight_slot_ = 0;
  std::unique_ptr<SavedOperand> saved_x_;
};

}  // namespace

LinearParameters linear_parameters(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_same_device_dtype(op, weight, {&bias});
  TG_CHECK(weight.device() == x.device(), TypeError, op, ": expected all tensors on ", x.device().str(),
           ", got the weight on ", weight.device().str());
  if (weight.dtype() == x.dtype()) return {weight, bias, std::nullopt};
  TG_CHECK(x.dtype() == DType::bf16 && weight.dtype() == DType::f32, TypeError, op, ": expected the weight in ",
           dtype_name(x.dtype()), x.dtype() == DType::bf16 ? " or f32 (mixed precision)" : "", " like the input, got ",
           dtype_name(weight.dtype()));
  // The step's cached copies when it made them (AutocastWeightCache), else copies made here.
  auto rounded = [&](const Tensor& parameter) {
    if (!parameter.defined()) return parameter;
    const Tensor cached = AutocastWeightCache::find(parameter, x.dtype());
    return cached.defined() ? cached : parameter.to(x.dtype());
  };
  return {rounded(weight), rounded(bias), weight.dtype()};
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, BackwardStrategy* strategy) {
  check_linear(x, weight, bias);
  const LinearParameters params = linear_parameters("linear", x, weight, bias);
  const Tensor x_rows = rows_of(x);
  Shape out_shape = x.shape();
  out_shape[out_shape.ndim() - 1] = weight.size(0);
  Tensor out = gemm(x_rows, false, params.weight, /*trans_b=*/true, params.bias).raw_view(out_shape);
  if (should_record({&x, &weight, &bias}))
    record(std::make_shared<LinearBackward>(x, x_rows, weight, params, strategy), {x, weight, bias}, {out});
  return out;
}

}  // namespace tg
