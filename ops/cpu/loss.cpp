// CPU kernels of the loss family.
#include "core/strided.h"
#include "ops/loss_kernels.h"
#include "ops/softmax_functors.h"

namespace tg::cpu {

void cross_entropy(const Tensor& row_loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                   double label_smoothing) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  TG_DISPATCH_FLOATING(logits.dtype(), "cross_entropy", [&] {
    using acc = acc_t<scalar_t>;
    with_target_type(targets.dtype(), [&](auto index) {
      using I = decltype(index);
      const auto* t = targets.data<I>();
      const acc eps = static_cast<acc>(label_smoothing);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t target = static_cast<int64_t>(t[r]);
        TG_CHECK(target >= 0 && target < cols, IndexError, "cross_entropy: target ", target, " at row ", r,
                 " is out of range for ", cols, " classes");
        const auto* x = static_cast<const scalar_t*>(logits.raw_data()) + r * cols;
        MaxSum<acc> stats = MaxSum<acc>::empty();
        acc total = 0;
        for (int64_t j = 0; j < cols; ++j) {
          const acc v = convert<acc>(x[j]);
          stats.add(v);
          total += v;
        }
        const acc l = stats.log_sum_exp();
        lse.data<acc>()[r] = l;
        row_loss.data<acc>()[r] =
            (acc(1) - eps) * (l - convert<acc>(x[target])) + eps * (l - total / static_cast<acc>(cols));
      }
    });
  });
}

void cross_entropy_backward(const Tensor& grad_logits, const Tensor& grad_loss, const Tensor& logits,
                            const Tensor& targets, const Tensor& lse, double label_smoothing) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  TG_DISPATCH_FLOATING(logits.dtype(), "cross_entropy_backward", [&] {
    using acc = acc_t<scalar_t>;
    with_target_type(targets.dtype(), [&](auto index) {
      using I = decltype(index);
      const auto* t = targets.data<I>();
      const acc eps = static_cast<acc>(label_smoothing);
      const acc off_target = eps / static_cast<acc>(cols), on_target = acc(1) - eps + off_target;
      const acc scale = convert<acc>(*static_cast<const scalar_t*>(grad_loss.raw_data())) / static_cast<acc>(rows);
      for (int64_t r = 0; r < rows; ++r) {
        const auto* x = static_cast<const scalar_t*>(logits.raw_data()) + r * cols;
        auto* gx = static_cast<scalar_t*>(grad_logits.raw_data()) + r * cols;
        const acc l = lse.data<acc>()[r];
        for (int64_t j = 0; j < cols; ++j) {
          const acc p = exp(convert<acc>(x[j]) - l);
          gx[j] = convert<scalar_t>((p - (j == static_cast<int64_t>(t[r]) ? on_target : off_target)) * scale);
        }
      }
    });
  });
}

}  // namespace tg::cpu
