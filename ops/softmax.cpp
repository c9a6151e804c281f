// Softmax and log-softmax: forward dispatch and the backward node, which keeps only the output
// (softmax: gx = y * (g - sum(g * y)); log_softmax: gx = g - exp(y) * sum(g), rows of the last dim).
#include "ops/softmax.h"

#include "autograd/engine.h"
#include "ops/dispatch.h"
#include "ops/softmax_kernels.h"

namespace tg {

namespace {

const char* softmax_name(bool log) { return log ? "log_softmax" : "softmax"; }

Tensor softmax_forward(const Tensor& x, bool log) {
  const char* name = softmax_name(log);
  TG_CHECK(x.dim() >= 1, ShapeError, name, ": expected a tensor with at least one dim, got a scalar");
  TG_CHECK(is_floating(x.dtype()), TypeError, name, ": expected a floating dtype, got ", dtype_name(x.dtype()));
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  if (x.numel() > 0) TG_DEVICE_DISPATCH(x.device(), softmax, y, x.raw_contiguous(), x.size(-1), log);
  return y;
}

class SoftmaxBackward final : public Node {
 public:
  SoftmaxBackward(const Tensor& y, bool log) : Node(log ? "LogSoftmaxBackward" : "SoftmaxBackward"), log_(log) {
    save(y);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const Tensor& y = saved(0);
    Tensor gx = empty(y.shape(), y.dtype(), y.device());
    if (y.numel() > 0) TG_DEVICE_DISPATCH(y.device(), softmax_backward, gx, grads[0].raw_contiguous(), y, y.size(-1), log_);
    return {gx};
  }

 private:
  bool log_;
};

Tensor softmax_op(const Tensor& x, bool log) {
  Tensor y = softmax_forward(x, log);
  if (should_record({&x})) record(std::make_shared<SoftmaxBackward>(y, log), {x}, {y});
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x) { return softmax_op(x, false); }
Tensor log_softmax(const Tensor& x) { return softmax_op(x, true); }

}  // namespace tg
