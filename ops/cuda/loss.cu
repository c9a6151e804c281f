// CUDA kernels of the loss family: the forward gives each row a warp (C <= 1024) or a block and
// reads the row once (online max/sum, plain sum, target logit); the backward is one
// elementwise pass. A target outside [0, C) cannot be reported without a host synchronization,
// so its row's loss and gradient are written as NaN.
#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "ops/cuda/row_reduce.cuh"
#include "ops/loss_kernels.h"

namespace tg::cuda {

namespace {

template <class T, class I, class Group>
__global__ void cross_entropy_kernel(acc_t<T>* row_loss, acc_t<T>* lse, const T* logits, const I* targets,
                                     int64_t rows, int64_t cols, acc_t<T> eps) {
  using acc = acc_t<T>;
  for (int64_t row = Group::first_row(); row < rows; row += Group::row_stride()) {
    const T* x = logits + row * cols;
    MaxSum<acc> stats = MaxSum<acc>::empty();
    acc total = 0;
    for (int64_t j = Group::rank(); j < cols; j += Group::kSize) {
      const acc v = convert<acc>(x[j]);
      stats.add(v);
      total += v;
    }
    stats = Group::softmax_stats(stats);
    total = Group::sum(total);
    if (Group::rank() != 0) continue;
    const int64_t target = static_cast<int64_t>(targets[row]);
    const acc l = stats.log_sum_exp();
    lse[row] = l;
    row_loss[row] = target >= 0 && target < cols
                        ? (acc(1) - eps) * (l - convert<acc>(x[target])) + eps * (l - total / static_cast<acc>(cols))
                        : static_cast<acc>(NAN);
  }
}

template <class T, class I>
__global__ void cross_entropy_backward_kernel(T* grad_logits, const T* grad_loss, const T* logits, const I* targets,
                                              const acc_t<T>* lse, int64_t rows, int64_t cols, acc_t<T> eps) {
  using acc = acc_t<T>;
  const acc off_target = eps / static_cast<acc>(cols), on_target = acc(1) - eps + off_target;
  const acc scale = convert<acc>(*grad_loss) / static_cast<acc>(rows);
  TG_GRID_STRIDE_LOOP(k, rows * cols) {
    const int64_t row = k / cols, j = k % cols, target = static_cast<int64_t>(targets[row]);
    const acc p = exp(convert<acc>(logits[k]) - lse[row]);
    const acc g = (p - (j == target ? on_target : off_target)) * scale;
    grad_logits[k] = convert<T>(target >= 0 && target < cols ? g : static_cast<acc>(NAN));
  }
}

}  // namespace

void cross_entropy(const Tensor& row_loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                   double label_smoothing) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  DeviceGuard guard(logits.device().index);
  TG_DISPATCH_FLOATING(logits.dtype(), "cross_entropy", [&] {
    using acc = acc_t<scalar_t>;
    with_target_type(targets.dtype(), [&](auto index) {
      using I = decltype(index);
      with_row_layout<false>(cols, [&](auto group, auto) {
        using Group = decltype(group);
        cross_entropy_kernel<scalar_t, I, Group><<<Group::grid(rows), kRowThreads, 0, current_stream()>>>(
            row_loss.data<acc>(), lse.data<acc>(), static_cast<const scalar_t*>(logits.raw_data()),
            targets.data<I>(), rows, cols, static_cast<acc>(label_smoothing));
        TG_CUDA_CHECK_LAUNCH();
      });
    });
  });
}

void cross_entropy_backward(const Tensor& grad_logits, const Tensor& grad_loss, const Tensor& logits,
                            const Tensor& targets, const Tensor& lse, double label_smoothing) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  DeviceGuard guard(logits.device().index);
  TG_DISPATCH_FLOATING(logits.dtype(), "cross_entropy_backward", [&] {
    using acc = acc_t<scalar_t>;
    with_target_type(targets.dtype(), [&](auto index) {
      using I = decltype(index);
      cross_entropy_backward_kernel<<<grid_for(rows * cols), kBlockSize, 0, current_stream()>>>(
          static_cast<scalar_t*>(grad_logits.raw_data()), static_cast<const scalar_t*>(grad_loss.raw_data()),
          static_cast<const scalar_t*>(logits.raw_data()), targets.data<I>(), lse.data<acc>(), rows, cols,
          static_cast<acc>(label_smoothing));
      TG_CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace tg::cuda
