// Layer normalization over the last dim, with autograd: y = (x - mean) * rstd * weight + bias,
// rstd = 1 / sqrt(var + eps) (biased variance). weight and bias ([D]) may each be undefined.
#pragma once

#include "core/tensor.h"

namespace tg {

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

}  // namespace tg
