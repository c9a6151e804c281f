// Shared by the attention tests (tests/ops/test_attention.cpp, test_attention_gemm.cpp): the
// explicit composition every fused path is checked against, and one run's output and input
// gradients.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "autograd/engine.h"
#include "ops/elementwise.h"
#include "ops/matmul/matmul.h"
#include "ops/softmax.h"
#include "tests/support/op_checks.h"

namespace tg::test {

// softmax(q·kᵀ·scale)·v with the recording ops.
inline Tensor explicit_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  return matmul(softmax(mul(matmul(q, k, false, true), scale)), v);
}

// (B, H, Tq, Tk, D) the fused paths are checked at against the explicit one: one token, Tq != Tk,
// ViT-S/4's 65 tokens, a head dim that is no power of two.
inline const std::vector<std::array<int64_t, 5>> kAttentionShapes = {
    {1, 1, 1, 1, 4}, {2, 3, 5, 7, 8}, {1, 2, 65, 65, 16}, {2, 1, 9, 3, 5}};

using AttentionFn = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;

// The output and the three input gradients of `attention` on copies of q0, k0, v0, for one
// fixed output gradient.
inline std::vector<std::vector<double>> attention_results(const AttentionFn& attention, const Tensor& q0,
                                                          const Tensor& k0, const Tensor& v0) {
  Tensor q = q0.detach().clone(), k = k0.detach().clone(), v = v0.detach().clone();
  for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
  const Tensor out = attention(q, k, v);
  backward(out, random_tensor(out.shape(), 99, -1, 1, out.dtype()));
  return {host_values(out), host_values(q.grad()), host_values(k.grad()), host_values(v.grad())};
}

}  // namespace tg::test
