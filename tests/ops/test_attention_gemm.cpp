// gemm_attention on the CPU: forward and the three input gradients against the explicit
// composition (matmul, softmax, matmul) in f64, chunked bit for bit as unchunked, gradcheck, what
// backward keeps (Q·scale, K, V: never the probabilities), strided heads, no queries, bf16 against
// f32, and the errors.
#include <doctest/doctest.h>

#include <array>
#include <cmath>

#include "autograd/gradcheck.h"
#include "ops/attention.h"
#include "ops/matmul/matmul.h"
#include "ops/shape_ops.h"
#include "ops/softmax.h"
#include "tests/ops/attention_reference.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;

using test::attention_results;
using test::explicit_attention;

TEST_CASE("gemm_attention equals the explicit attention, and chunks change no bit") {
  for (const auto& [b, h, tq, tk, d] : test::kAttentionShapes) {
    CAPTURE(tq);
    CAPTURE(tk);
    const Tensor q = test::random_tensor({b, h, tq, d}, 10, -2, 2, DType::f64);
    const Tensor k = test::random_tensor({b, h, tk, d}, 11, -2, 2, DType::f64);
    const Tensor v = test::random_tensor({b, h, tk, d}, 12, -2, 2, DType::f64);
    const double scale = 1 / std::sqrt(static_cast<double>(d));
    const auto whole = attention_results([&](auto& x, auto& y, auto& z) { return gemm_attention(x, y, z, scale); }, q, k, v);
    // A budget of one byte: every (batch, head) matrix is a chunk of its own.
    const auto chunked = attention_results([&](auto& x, auto& y, auto& z) { return gemm_attention(x, y, z, scale, 1); }, q, k, v);
    const auto plain = attention_results([&](auto& x, auto& y, auto& z) { return explicit_attention(x, y, z, scale); }, q, k, v);
    for (size_t i = 0; i < whole.size(); ++i) {
      CAPTURE(i);
      CHECK(test::relative_error(whole[i], plain[i]) < 1e-12);
      CHECK(chunked[i] == whole[i]);
    }
  }
}

TEST_CASE("gradcheck: gemm_attention, chunked") {
  const Tensor q = test::random_param({2, 2, 4, 3}, 20, -1, 1, DType::f64),
               k = test::random_param({2, 2, 5, 3}, 21, -1, 1, DType::f64),
               v = test::random_param({2, 2, 5, 3}, 22, -1, 1, DType::f64);
  const auto r = gradcheck([](const std::vector<Tensor>& in) { return gemm_attention(in[0], in[1], in[2], 0.7, 300); },
                           {q, k, v});
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("gemm_attention keeps Q·scale, K and V, takes strided heads, and handles no queries") {
  // q, k, v as nn::Attention makes them: views of one [B, T, 3, H, D] buffer.
  const int64_t b = 2, t = 6, h = 3, d = 4;
  Tensor qkv = test::random_tensor({b, t, 3, h, d}, 30);
  qkv.set_requires_grad(true);
  auto head = [&](int64_t i) { return permute(select(qkv, 2, i), {0, 2, 1, 3}); };
  const Tensor out = gemm_attention(head(0), head(1), head(2), 0.5);
  CHECK(out.shape() == Shape({b, h, t, d}));
  CHECK(out.is_contiguous());
  REQUIRE(out.grad_fn());
  CHECK(out.grad_fn()->name() == "GemmAttentionBackward");
  // Contiguous [B·H, T, D] copies of Q·scale, and of K and V with their keys padded to whole
  // 16-byte rows of scores (6 f32 keys -> 8); nothing [T, T].
  CHECK(out.grad_fn()->saved_bytes() == static_cast<size_t>(b * h * t * d + 2 * b * h * 8 * d) * 4);
  const Tensor g = test::random_tensor(out.shape(), 31);
  backward(out, g);
  Tensor qkv_copy = qkv.detach().clone();
  qkv_copy.set_requires_grad(true);
  auto copy_head = [&](int64_t i) { return contiguous(permute(select(qkv_copy, 2, i), {0, 2, 1, 3})); };
  backward(gemm_attention(copy_head(0), copy_head(1), copy_head(2), 0.5), g);
  CHECK(host_values(qkv.grad()) == host_values(qkv_copy.grad()));

  // No queries: an empty output, and K and V get zero gradients.
  Tensor q0 = test::random_param({2, 3, 0, 4}, 32), k0 = test::random_param({2, 3, 5, 4}, 33),
         v0 = test::random_param({2, 3, 5, 4}, 34);
  const Tensor none = gemm_attention(q0, k0, v0, 0.5);
  CHECK(none.shape() == Shape({2, 3, 0, 4}));
  backward(none, zeros(none.shape()));
  CHECK(host_values(k0.grad()) == std::vector<double>(120, 0.0));
  CHECK(host_values(v0.grad()) == std::vector<double>(120, 0.0));
}

TEST_CASE("gemm_attention in bf16 is within bf16 rounding of f32") {
  const Tensor q = test::random_tensor({2, 2, 33, 16}, 40), k = test::random_tensor({2, 2, 33, 16}, 41),
               v = test::random_tensor({2, 2, 33, 16}, 42);
  const auto in_f32 = attention_results([](auto& x, auto& y, auto& z) { return gemm_attention(x, y, z, 0.25); }, q, k, v);
  const auto in_bf16 = attention_results([](auto& x, auto& y, auto& z) { return gemm_attention(x, y, z, 0.25); },
                               q.to(DType::bf16), k.to(DType::bf16), v.to(DType::bf16));
  for (size_t i = 0; i < in_f32.size(); ++i) {
    CAPTURE(i);
    CHECK(test::relative_error(in_bf16[i], in_f32[i]) < 3e-2);
  }
}

TEST_CASE("gemm_attention errors say what was expected") {
  const Tensor x = zeros({2, 3, 4, 5});
  CHECK_THROWS_WITH_AS(gemm_attention(x, zeros({2, 3, 4, 6}), x, 1),
                       "gemm_attention: expected q [B, H, Tq, D] and k, v [B, H, Tk, D], got [2, 3, 4, 5], "
                       "[2, 3, 4, 6], [2, 3, 4, 5]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(gemm_attention(x, x, x, 1, 0), "gemm_attention: expected a positive chunk budget, got 0",
                       ValueError);
}
