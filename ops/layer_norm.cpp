// Layer normalization: forward dispatch and the backward node. The node saves the input x with
// the per-row mean and rstd, not the output: x is the residual stream, alive anyway, so saving
// it costs nothing and lets the linears after the norm free their own inputs (WTACRS.md §5).
#include "ops/layer_norm.h"

#include <optional>
#include <utility>

#include "autograd/engine.h"
#include "ops/dispatch.h"
#include "ops/layer_norm_kernels.h"

namespace tg {

namespace {

struct LayerNormResult {
  Tensor y, mean, rstd;
};

LayerNormResult layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
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

class LayerNormBackward final : public Node {
 public:
  LayerNormBackward(const Tensor& x, const Tensor& weight, const LayerNormResult& r) : Node("LayerNormBackward") {
    save(x);
    save(r.mean);
    save(r.rstd);
    if (weight.defined()) weight_slot_ = save(weight);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const Tensor& x = saved(0);
    const Tensor weight = weight_slot_ ? saved(*weight_slot_) : Tensor();
    const int64_t cols = x.size(-1);
    Tensor gx, gw, gb;
    if (needs_input_grad(0)) gx = empty(x.shape(), x.dtype(), x.device());
    if (needs_input_grad(1)) gw = empty({cols}, x.dtype(), x.device());
    if (needs_input_grad(2)) gb = empty({cols}, x.dtype(), x.device());
    if (x.numel() > 0) {
      TG_DEVICE_DISPATCH(x.device(), layer_norm_backward, gx, gw, gb, grads[0].raw_contiguous(), x.raw_contiguous(),
                         saved(1), saved(2), weight.defined() ? weight.raw_contiguous() : weight, cols);
    } else {
      for (const Tensor* t : {&gw, &gb})
        if (t->defined()) t->fill_(0);
    }
    return {gx, gw, gb};
  }

 private:
  std::optional<size_t> weight_slot_;
};

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  return layer_norm(x, weight, bias, eps, x.dtype());
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, DType out_dtype) {
  LayerNormResult r = layer_norm_forward(x, weight, bias, eps, out_dtype);
  if (should_record({&x, &weight, &bias}))
    record(std::make_shared<LayerNormBackward>(x, weight, r), {x, weight, bias}, {r.y});
  return r.y;
}

}  // namespace tg
