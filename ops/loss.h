// Losses with autograd.
#pragma once

#include "core/tensor.h"

namespace tg {

// Mean over rows of the cross entropy between softmax(logits) ([N, C], floating) and integer
// class targets ([N], i64 or i32), with PyTorch's label smoothing eps in [0, 1]:
// loss_i = (1 - eps) * -log p[i, t_i] + eps * mean_c(-log p[i, c]). Returns a scalar of the
// logits' dtype. A target outside [0, C) is an IndexError on the CPU; on CUDA, where checking
// would need a host synchronization, that row's loss (and so the mean) and gradient are NaN.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, double label_smoothing = 0.0);

}  // namespace tg
