// Shared by the layer_norm tests (CPU and CUDA): a residual block's stream x feeds both the skip
// connection and a norm; the norm's backward adds x's gradient into the sum the engine holds for
// x (autograd/pending_grad.h). The check: x's gradient equals, bit for bit, the skip gradient plus
// the norm's input gradient computed on its own and summed as the engine sums.
#pragma once

#include <doctest/doctest.h>

#include <functional>

#include "autograd/engine.h"
#include "ops/elementwise.h"
#include "ops/layer_norm.h"
#include "ops/reduce.h"
#include "tests/support/op_checks.h"

namespace tg::test {

// norm(x) -> the norm's output; `norm` is layer_norm or an op that ends in one (norm_linear).
// y = x + 2 * norm_out (the product keeps the norm's output gradient a tensor of its own, as the
// branch's linears do), loss = sum(y * r).
inline void check_norm_adds_into_residual_gradient(Device device, DType dtype, DType norm_dtype, const Shape& shape,
                                                   uint64_t seed) {
  CAPTURE(shape.str());
  CAPTURE(dtype_name(dtype));
  CAPTURE(dtype_name(norm_dtype));
  const int64_t d = shape[shape.ndim() - 1];
  Tensor x = random_tensor(shape, seed, -3, 5, dtype, device);
  const Tensor w = random_tensor({d}, seed + 1, 0.5, 2, dtype, device);
  const Tensor b = random_tensor({d}, seed + 2, -1, 1, dtype, device);
  const Tensor r = random_tensor(shape, seed + 3, -1, 1, dtype, device);
  x.set_requires_grad(true);
  const double eps = 1e-5;
  const Tensor norm_out = layer_norm(x, w, b, eps, norm_dtype);
  backward(sum(add_converted(x, norm_out * 2.0) * r));

  // The same gradient from its pieces: the skip path gives r; the norm's output gradient is
  // 2·r (in the norm's output dtype, as the product's backward rounds it).
  const LayerNormResult stats = layer_norm_unrecorded(x.detach(), w, b, eps, norm_dtype);
  const Tensor norm_grad = (r.to(norm_dtype) * 2.0);
  const LayerNormGrads pieces =
      layer_norm_gradients(norm_grad, x.detach(), stats.mean, stats.rstd, w, true, false, false);
  Tensor expected = r.clone();
  expected.accumulate_(pieces.x);
  CHECK(host_values(x.grad()) == host_values(expected));

  // And layer_norm_gradients itself, handed that sum: the same bits, in the same tensor.
  const Tensor sum_so_far = r.clone();
  const LayerNormGrads fused =
      layer_norm_gradients(norm_grad, x.detach(), stats.mean, stats.rstd, w, true, false, false, sum_so_far);
  CHECK(fused.x.shares_storage(sum_so_far));
  CHECK(host_values(fused.x) == host_values(expected));
}

}  // namespace tg::test
