// Layer normalization: forward dispatch and the backward node. The node saves the input x with
// the per-row mean and rstd, not the output: x is the residual stream, alive anyway, so saving
// it costs nothing and lets the linears after the norm free their own inputs (WTACRS.md §5).
#include "ops/layer_norm.h"

#include <optional>
#include <utility>

#include "autograd/engine.h"
#include "autograd/pending_grad.h"
#include "ops/dispatch.h"
#include "ops/layer_norm_kernels.h"

namespace tg {

LayerNormResult layer_norm_unrecorded(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                      DType out_dtype) {
  TG_CHECK(x.dim() >= 1, ShapeError, "layer_norm: expected a tensor with at least one dim, got a scalar");
  TG_CHECK(is_floating(x.dtype()), TypeError, "layer_norm: expected a floating dtype, got ", dtype_name(x.dtype()));
  check_same_device_dtype("layer_norm", x, {&weight, &bias});
  const int64_t cols = x.size(-1);
  for (const auto& [t, what] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    TG_CHECK(!t->defined() || t->shape() == Shape{cols}, ShapeError, "layer_norm: expected ", what, " of shape [",
             cols, "] for input of shape ", x.shape().str(), ", got ", t->shape().str());
  }
  TG_CHECK(eps >= 0, ValueError, "layer_norm: expected eps >= 0, got ", eps);
  TG_CHECK(out_dtype == x.dtype() || (x.dtype() == DType::f32 && out_dtype == DType::bf16), TypeError,
           "layer_norm: expected an output dtype of ", dtype_name(x.dtype()),
           x.dtype() == DType::f32 ? " or bf16" : "", ", got ", dtype_name(out_dtype));
  const int64_t rows = cols > 0 ? x.numel() / cols : 0;
  const DType stats = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  LayerNormResult r{empty(x.shape(), out_dtype, x.device()), empty({rows}, stats, x.device()),
                    empty({rows}, stats, x.device())};
  if (x.numel() > 0) {
    TG_DEVICE_DISPATCH(x.device(), layer_norm, r.y, r.mean, r.rstd, x.raw_contiguous(),
                       weight.defined() ? weight.raw_contiguous() : weight, bias.defined() ? bias.raw_contiguous() : bias,
                       cols, eps);
  }
  return r;
}

LayerNormGrads layer_norm_gradients(const Tensor& grad_y, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                                    const Tensor& weight, bool input, bool affine_weight, bool affine_bias,
                                    const Tensor& x_grad_sum) {
  const int64_t cols = x.size(-1);
  const bool accumulate = x_grad_sum.defined();
  TG_INTERNAL_ASSERT(!accumulate || (input && x_grad_sum.is_contiguous() && x_grad_sum.shape() == x.shape() &&
                                     x_grad_sum.dtype() == x.dtype() && x_grad_sum.device() == x.device()),
                     "layer_norm_gradients: a gradient sum of shape ", x_grad_sum.shape().str(), " for x of shape ",
                     x.shape().str());
  LayerNormGrads g;
  if (input) g.x = accumulate ? x_grad_sum : empty(x.shape(), x.dtype(), x.device());
  if (affine_weight) g.weight = empty({cols}, x.dtype(), x.device());
  if (affine_bias) g.bias = empty({cols}, x.dtype(), x.device());
  if (x.numel() > 0) {
    TG_DEVICE_DISPATCH(x.device(), layer_norm_backward, g.x, g.weight, g.bias, grad_y.raw_contiguous(),
                       x.raw_contiguous(), mean, rstd, weight.defined() ? weight.raw_contiguous() : weight, cols,
                       accumulate);
  } else {
    for (const Tensor* t : {&g.weight, &g.bias})
      if (t->defined()) t->fill_(0);
  }
  return g;
}

namespace {

// Adds x's gradient into the engine's pending sum when there is one: x is the residual stream,
// whose gradient also arrives through the skip connection.
class LayerNormBackward final : public Node, public AddsIntoPendingGrad {
 public:
  LayerNormBackward(const Tensor& x, const Tensor& weight, const LayerNormResult& r) : Node("LayerNormBackward") {
    save(x);
    save(r.mean);
    save(r.rstd);
    if (weight.defined()) weight_slot_ = save(weight);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const Tensor weight = weight_slot_ ? saved(*weight_slot_) : Tensor();
    LayerNormGrads g = layer_norm_gradients(grads[0], saved(0), saved(1), saved(2), weight, needs_input_grad(0),
                                            needs_input_grad(1), needs_input_grad(2), take_pending_grad(0));
    return {g.x, g.weight, g.bias};
  }
  bool adds_into_pending_grad(size_t input) const override { return input == 0; }

 private:
  std::optional<size_t> weight_slot_;
};

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  return layer_norm(x, weight, bias, eps, x.dtype());
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, DType out_dtype) {
  LayerNormResult r = layer_norm_unrecorded(x, weight, bias, eps, out_dtype);
  if (should_record({&x, &weight, &bias}))
    record(std::make_shared<LayerNormBackward>(x, weight, r), {x, weight, bias}, {r.y});
  return r.y;
}

}  // namespace tg
