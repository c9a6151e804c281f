// norm_linear: the forward (the norm, then the GEMM with fused bias) and the backward node that
// recomputes the norm's output for the weight gradient.
#include "ops/matmul/norm_linear.h"

#include "autograd/engine.h"
#include "ops/layer_norm.h"
#include "ops/matmul/gemm.h"
#include "ops/matmul/linear.h"
#include "ops/precision.h"
#include "ops/reduce.h"

namespace tg {

namespace {

// x [..., D] as [N, D].
Tensor as_rows(const Tensor& x) { return x.raw_reshape({x.numel() / x.size(-1), x.size(-1)}); }

class NormLinearBackward final : public Node {
 public:
  NormLinearBackward(const Tensor& x, const Tensor& norm_weight, const Tensor& norm_bias, double eps,
                     const LayerNormResult& norm, const Tensor& weight)
      : Node("NormLinearBackward"), eps_(eps), norm_dtype_(norm.y.dtype()) {
    save(x);
    save(norm.mean);
    save(norm.rstd);
    save(norm_weight);
    save(norm_bias);
    save(weight);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const PrecisionGuard precision(policy_);  // backward GEMMs run in the forward's precision
    const Tensor &x = saved(0), &mean = saved(1), &rstd = saved(2), &norm_weight = saved(3), &norm_bias = saved(4),
                 &weight = saved(5);
    const Tensor g = as_rows(grads[0]);  // dY [N, D_out]
    Tensor gw, gb;
    if (needs_input_grad(3)) {
      const Tensor y = as_rows(layer_norm_unrecorded(x, norm_weight, norm_bias, eps_, norm_dtype_).y);
      gw = gemm(g.raw_unsqueeze(0), /*trans_a=*/true, y.raw_unsqueeze(0), /*trans_b=*/false).raw_squeeze(0);
    }
    if (needs_input_grad(4)) gb = sum_to(g, input_metas()[4].shape);
    LayerNormGrads norm_grads;
    if (needs_input_grad(0) || needs_input_grad(1) || needs_input_grad(2)) {
      const Tensor gy = gemm(g, false, weight, false).raw_reshape(x.shape());
      norm_grads = layer_norm_gradients(gy, x, mean, rstd, norm_weight, needs_input_grad(0), needs_input_grad(1),
                                        needs_input_grad(2));
    }
    return {norm_grads.x, norm_grads.weight, norm_grads.bias, gw, gb};
  }

 private:
  PrecisionPolicy policy_ = precision_policy();
  double eps_;
  DType norm_dtype_;
};

}  // namespace

Tensor norm_linear(const Tensor& x, const Tensor& norm_weight, const Tensor& norm_bias, double eps, DType norm_dtype,
                   const Tensor& weight, const Tensor& bias) {
  LayerNormResult norm = layer_norm_unrecorded(x, norm_weight, norm_bias, eps, norm_dtype);
  Tensor out;
  {
    NoGradGuard no_grad;  // the linear's own node would keep y
    out = linear(norm.y, weight, bias);
  }
  if (should_record({&x, &norm_weight, &norm_bias, &weight, &bias}))
    record(std::make_shared<NormLinearBackward>(x, norm_weight, norm_bias, eps, norm, weight),
           {x, norm_weight, norm_bias, weight, bias}, {out});
  return out;
}

}  // namespace tg
