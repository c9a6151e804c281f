// CPU kernels of the softmax family: one online max/sum pass per row, then the output pass.
// Rows accumulate in double: the CPU path is the reference the CUDA kernels are tested against,
// and float sums over long rows (20,000 columns) drift by ~1e-5.
#include "core/strided.h"
#include "ops/softmax_functors.h"
#include "ops/softmax_kernels.h"

namespace tg::cpu {

void softmax(const Tensor& y, const Tensor& x, int64_t cols, bool log) {
  const int64_t rows = x.numel() / cols;
  TG_DISPATCH_FLOATING(x.dtype(), log ? "log_softmax" : "softmax", [&] {
    using acc = double;
    for (int64_t r = 0; r < rows; ++r) {
      const auto* in = static_cast<const scalar_t*>(x.raw_data()) + r * cols;
      auto* out = static_cast<scalar_t*>(y.raw_data()) + r * cols;
      MaxSum<acc> stats = MaxSum<acc>::empty();
      for (int64_t j = 0; j < cols; ++j) stats.add(convert<acc>(in[j]));
      const acc lse = stats.log_sum_exp();
      for (int64_t j = 0; j < cols; ++j) {
        const acc v = convert<acc>(in[j]);
        out[j] = convert<scalar_t>(log ? v - lse : exp(v - stats.max) / stats.sum);
      }
    }
  });
}

void softmax_backward(const Tensor& grad_x, const Tensor& grad_y, const Tensor& y, int64_t cols, bool log) {
  const int64_t rows = y.numel() / cols;
  TG_DISPATCH_FLOATING(y.dtype(), "softmax_backward", [&] {
    using acc = double;
    for (int64_t r = 0; r < rows; ++r) {
      const auto* g = static_cast<const scalar_t*>(grad_y.raw_data()) + r * cols;
      const auto* out = static_cast<const scalar_t*>(y.raw_data()) + r * cols;
      auto* gx = static_cast<scalar_t*>(grad_x.raw_data()) + r * cols;
      acc total = 0;  // log: sum(g); softmax: sum(g * y)
      for (int64_t j = 0; j < cols; ++j) total += log ? convert<acc>(g[j]) : convert<acc>(g[j]) * convert<acc>(out[j]);
      for (int64_t j = 0; j < cols; ++j) {
        const acc gj = convert<acc>(g[j]), yj = convert<acc>(out[j]);
        gx[j] = convert<scalar_t>(log ? gj - exp(yj) * total : yj * (gj - total));
      }
    }
  });
}

}  // namespace tg::cpu
