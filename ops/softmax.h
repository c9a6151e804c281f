// Softmax and log-softmax over the last dim (any leading dims), with autograd. Floating dtypes;
// statistics accumulate in f32 (f64 for f64 inputs).
#pragma once

#include "core/tensor.h"

namespace tg {

Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);

}  // namespace tg
