// linear_gelu forward and its recomputing backward node.
#include "ops/matmul/linear_gelu.h"

#include "autograd/engine.h"
#include "ops/dispatch.h"
#include "ops/elementwise_kernels.h"
#include "ops/matmul/gemm.h"
#include "ops/matmul/linear.h"
#include "ops/precision.h"
#include "ops/reduce.h"

namespace tg {

namespace {

UnaryOp gelu_op(GeluApproximation approximation) {
  return approximation == GeluApproximation::none ? UnaryOp::gelu_erf : UnaryOp::gelu_tanh;
}

// x [..., D] as its rows [N, D].
Tensor rows_of(const Tensor& x) { return x.raw_reshape({x.numel() / x.size(-1), x.size(-1)}); }

class LinearGeluBackward final : public Node {
 public:
  // `params` are the weight and bias as the GEMMs use them (linear_parameters).
  LinearGeluBackward(const Tensor& x, const LinearParameters& params, GeluApproximation approximation)
      : Node("LinearGeluBackward"), op_(gelu_op(approximation)), gradient_dtype_(params.gradient_dtype) {
    x_slot_ = save(x);
    weight_slot_ = save(params.weight);
    if (params.bias.defined()) bias_slot_ = save(params.bias);
    has_bias_ = params.bias.defined();
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const PrecisionGuard precision(policy_);  // backward GEMMs run in the forward's precision
    const Tensor x = rows_of(saved(x_slot_));
    const Tensor& weight = saved(weight_slot_);
    const Tensor dy = rows_of(grads[0]);
    // Recompute the pre-activation, turn it into dH in place of keeping it, then drop it.
    Tensor dh = gemm(x, false, weight, true, has_bias_ ? saved(bias_slot_) : Tensor());
    TG_DEVICE_DISPATCH(dh.device(), unary_backward, op_, dh, dy, dh, 0.0);
    Tensor gx, gw, gb;
    if (needs_input_grad(0)) gx = gemm(dh, false, weight, false).raw_reshape(input_metas()[0].shape);
    if (needs_input_grad(1) && needs_input_grad(2)) {  // db from dW's GEMM
      ProductAndRowSums both = gemm_with_row_sums(dh, true, x, false, gradient_dtype_);
      gw = both.product;
      gb = both.row_sums.raw_reshape(input_metas()[2].shape);
    } else if (needs_input_grad(1)) {
      gw = gemm(dh, true, x, false, Tensor(), gradient_dtype_);
    } else if (needs_input_grad(2)) {
      gb = sum_to(dh, input_metas()[2].shape, gradient_dtype_);
    }
    return {gx, gw, gb};
  }

  // The input is what this node keeps alive for backward; the weight and bias are parameters.
  size_t saved_bytes() const override { return released() ? 0 : saved(x_slot_).storage()->nbytes(); }
  void saved_storages(std::vector<const Storage*>& out) const override {
    if (!released()) out.push_back(saved(x_slot_).storage().get());
  }

 private:
  PrecisionPolicy policy_ = precision_policy();
  UnaryOp op_;
  std::optional<DType> gradient_dtype_;  // of dW and db
  size_t x_slot_ = 0, weight_slot_ = 0, bias_slot_ = 0;
  bool has_bias_ = false;
};

}  // namespace

Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias, GeluApproximation approximation) {
  const LinearParameters params = linear_parameters("linear_gelu", x, weight, bias);
  TG_CHECK(x.dim() >= 1 && weight.dim() == 2 && x.size(-1) == weight.size(1), ShapeError, "linear_gelu: input has ",
           x.dim() >= 1 ? x.size(-1) : 0, " features (shape ", x.shape().str(), ") but weight expects ",
           weight.dim() == 2 ? weight.size(1) : 0, " (shape ", weight.shape().str(), ")");
  TG_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), ShapeError,
           "linear_gelu: bias must have shape [", weight.size(0), "], got ", bias.defined() ? bias.shape().str() : "");
  std::vector<int64_t> out_dims(x.shape().begin(), x.shape().end() - 1);
  out_dims.push_back(weight.size(0));
  // The activation is written over the pre-activation: one buffer, which dies with the forward.
  Tensor out = gemm(rows_of(x), false, params.weight, true, params.bias);
  TG_DEVICE_DISPATCH(out.device(), unary, gelu_op(approximation), out, out, 0.0, 0.0);
  out = out.raw_view(Shape(out_dims));
  if (should_record({&x, &weight, &bias}))
    record(std::make_shared<LinearGeluBackward>(x, params, approximation), {x, weight, bias}, {out});
  return out;
}

}  // namespace tg
