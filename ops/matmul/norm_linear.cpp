// norm_linear: the forward (the norm, then the GEMM with fused bias) and the backward node that
// recomputes the norm's output for the weight gradient.
#include "ops/matmul/norm_linear.h"

#include "autograd/engine.h"
#include "autograd/pending_grad.h"
#include "ops/layer_norm.h"
#include "ops/matmul/gemm.h"
#include "ops/matmul/linear.h"
#include "ops/precision.h"
#include "ops/reduce.h"

namespace tg {

namespace {

// x [..., D] as [N, D].
Tensor as_rows(const Tensor& x) { return x.raw_reshape({x.numel() / x.size(-1), x.size(-1)}); }

// Adds x's gradient into the engine's pending sum, as LayerNorm's backward does (x is the
// residual stream).
class NormLinearBackward final : public Node, public AddsIntoPendingGrad {
 public:
  // `params` are the linear's weight and bias as its GEMMs use them (linear_parameters).
  NormLinearBackward(const Tensor& x, const Tensor& norm_weight, const Tensor& norm_bias, double eps,
                     const LayerNormResult& norm, const LinearParameters& params)
      : Node("NormLinearBackward"), eps_(eps), norm_dtype_(norm.y.dtype()), gradient_dtype_(params.gradient_dtype) {
    save(x);
    save(norm.mean);
    save(norm.rstd);
    save(norm_weight);
    save(norm_bias);
    save(params.weight);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const PrecisionGuard precision(policy_);  // backward GEMMs run in the forward's precision
    const Tensor &x = saved(0), &mean = saved(1), &rstd = saved(2), &norm_weight = saved(3), &norm_bias = saved(4),
                 &weight = saved(5);
    const Tensor g = as_rows(grads[0]);  // dY [N, D_out]
    Tensor gw, gb;
    // The same GEMMs as linear's exact backward: dW with db from its epilogue, or db alone.
    if (needs_input_grad(3)) {
      const Tensor y = as_rows(layer_norm_unrecorded(x, norm_weight, norm_bias, eps_, norm_dtype_).y);
      if (needs_input_grad(4)) {
        ProductAndRowSums both = gemm_with_row_sums(g, /*trans_a=*/true, y, /*trans_b=*/false, gradient_dtype_);
        gw = both.product;
        gb = both.row_sums.raw_reshape(input_metas()[4].shape);
      } else {
        gw = gemm(g, /*trans_a=*/true, y, /*trans_b=*/false, Tensor(), gradient_dtype_);
      }
    } else if (needs_input_grad(4)) {
      gb = sum_to(g, input_metas()[4].shape, gradient_dtype_);
    }
    LayerNormGrads norm_grads;
    if (needs_input_grad(0) || needs_input_grad(1) || needs_input_grad(2)) {
      const Tensor gy = gemm(g, false, weight, false).raw_reshape(x.shape());
      norm_grads = layer_norm_gradients(gy, x, mean, rstd, norm_weight, needs_input_grad(0), needs_input_grad(1),
                                        needs_input_grad(2), take_pending_grad(0));
    }
    return {norm_grads.x, norm_grads.weight, norm_grads.bias, gw, gb};
  }
  bool adds_into_pending_grad(size_t input) const override { return input == 0; }

 private:
  PrecisionPolicy policy_ = precision_policy();
  double eps_;
  DType norm_dtype_;
  std::optional<DType> gradient_dtype_;  // of the linear's dW and db
};

}  // namespace

Tensor norm_linear(const Tensor& x, const Tensor& norm_weight, const Tensor& norm_bias, double eps, DType norm_dtype,
                   const Tensor& weight, const Tensor& bias) {
  LayerNormResult norm = layer_norm_unrecorded(x, norm_weight, norm_bias, eps, norm_dtype);
  // The GEMM's parameters (bf16 copies under mixed precision), kept for dX.
  const LinearParameters params = linear_parameters("norm_linear", norm.y, weight, bias);
  Tensor out;
  {
    NoGradGuard no_grad;  // the linear's own node would keep y
    out = linear(norm.y, params.weight, params.bias);
  }
  if (should_record({&x, &norm_weight, &norm_bias, &weight, &bias}))
    record(std::make_shared<NormLinearBackward>(x, norm_weight, norm_bias, eps, norm, params),
           {x, norm_weight, norm_bias, weight, bias}, {out});
  return out;
}

}  // namespace tg
