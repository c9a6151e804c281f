// Cross entropy: a fused log-softmax forward that keeps per-row log-sum-exp, and a backward that
// writes (softmax - smoothed one-hot) * g / N in one pass from the logits (alive anyway: the
// classifier's output) and that [N] vector.
#include "ops/loss.h"

#include "autograd/engine.h"
#include "ops/dispatch.h"
#include "ops/loss_kernels.h"
#include "ops/reduce.h"

namespace tg {

namespace {

class CrossEntropyBackward final : public Node {
 public:
  CrossEntropyBackward(const Tensor& logits, const Tensor& targets, const Tensor& lse, double label_smoothing)
      : Node("CrossEntropyBackward"), label_smoothing_(label_smoothing) {
    save(logits);
    save(targets);
    save(lse);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const Tensor& logits = saved(0);
    Tensor gx = empty(logits.shape(), logits.dtype(), logits.device());
    if (logits.numel() > 0) {
      TG_DEVICE_DISPATCH(logits.device(), cross_entropy_backward, gx, grads[0], logits, saved(1), saved(2),
                         label_smoothing_);
    }
    return {gx, Tensor()};
  }

 private:
  double label_smoothing_;
};

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, double label_smoothing) {
  TG_CHECK(logits.dim() == 2, ShapeError, "cross_entropy: expected logits of shape [N, C], got ",
           logits.shape().str());
  TG_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0), ShapeError,
           "cross_entropy: expected targets of shape [", logits.size(0), "] for logits of shape ",
           logits.shape().str(), ", got ", targets.shape().str());
  TG_CHECK(logits.size(1) > 0, ShapeError, "cross_entropy: expected at least one class, got logits of shape ",
           logits.shape().str());
  TG_CHECK(is_floating(logits.dtype()), TypeError, "cross_entropy: expected floating logits, got ",
           dtype_name(logits.dtype()));
  TG_CHECK(targets.dtype() == DType::i64 || targets.dtype() == DType::i32, TypeError,
           "cross_entropy: expected targets of dtype i64 or i32, got ", dtype_name(targets.dtype()));
  TG_CHECK(targets.device() == logits.device(), TypeError, "cross_entropy: expected targets on ",
           logits.device().str(), " like the logits, got ", targets.device().str());
  TG_CHECK(label_smoothing >= 0 && label_smoothing <= 1, ValueError,
           "cross_entropy: expected label_smoothing in [0, 1], got ", label_smoothing);
  const Tensor x = logits.raw_contiguous(), t = targets.raw_contiguous();
  const DType stats = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const Tensor row_loss = empty({logits.size(0)}, stats, logits.device());
  const Tensor lse = empty({logits.size(0)}, stats, logits.device());
  if (x.numel() > 0) TG_DEVICE_DISPATCH(x.device(), cross_entropy, row_loss, lse, x, t, label_smoothing);
  Tensor loss;
  {
    NoGradGuard no_grad;  // the node below is the loss's only grad_fn
    loss = mean(row_loss).to(logits.dtype());
  }
  if (should_record({&logits})) {
    record(std::make_shared<CrossEntropyBackward>(x, t, lse, label_smoothing), {logits, targets}, {loss});
  }
  return loss;
}

}  // namespace tg
