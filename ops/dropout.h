// Dropout with autograd. In training with p > 0, element i is kept when the Philox uniform u_i
// (the layout of a uniform fill: block first_block + i / 4, lane i % 4, key = the generator's
// seed) satisfies u_i >= p, and kept values are scaled by 1 / (1 - p). The mask is never stored:
// backward regenerates it from (seed, first_block), so CPU and CUDA drop the same elements for
// the same generator state. Otherwise (eval, or p == 0) it returns x itself and records nothing.
//
// drop_path (stochastic depth, timm's DropPath) drops whole samples instead of elements: sample b
// (index b of dim 0) is kept when the Philox uniform of element b of a [B] uniform fill is >= p
// (the dropout layout above, one draw per sample) and kept samples are scaled by 1 / (1 - p). Its
// node keeps only that per-sample scale ([B, 1, ..., 1], B values), not x.
#pragma once

#include "core/rng.h"
#include "core/tensor.h"

namespace tg {

// p in [0, 1); ValueError otherwise.
Tensor dropout(const Tensor& x, double p, bool training, Generator& generator = default_generator());

// x [B, ...]: p in [0, 1) (ValueError otherwise), a floating dtype and at least one dim.
Tensor drop_path(const Tensor& x, double p, bool training, Generator& generator = default_generator());

}  // namespace tg
