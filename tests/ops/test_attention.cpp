// Fused attention on the CPU: forward and the three input gradients against the explicit
// composition (matmul, softmax, matmul), gradcheck in f64, strided inputs, the [B, T, H, D]
// layout of the output, what backward keeps (never the [T, T] probabilities), bf16 against f32,
// and the errors.
#include <doctest/doctest.h>

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
using test::random_param;

using test::attention_results;
using test::explicit_attention;

TEST_CASE("fused attention equals the explicit one, forward and every input gradient") {
  for (const auto& [b, h, tq, tk, d] : test::kAttentionShapes) {
    CAPTURE(tq);
    CAPTURE(tk);
    const Tensor q = test::random_tensor({b, h, tq, d}, 10, -2, 2, DType::f64);
    const Tensor k = test::random_tensor({b, h, tk, d}, 11, -2, 2, DType::f64);
    const Tensor v = test::random_tensor({b, h, tk, d}, 12, -2, 2, DType::f64);
    const double scale = 1 / std::sqrt(static_cast<double>(d));
    const auto fused = attention_results([&](auto& x, auto& y, auto& z) { return scaled_dot_product_attention(x, y, z, scale); }, q, k, v);
    const auto plain = attention_results([&](auto& x, auto& y, auto& z) { return explicit_attention(x, y, z, scale); }, q, k, v);
    for (size_t i = 0; i < fused.size(); ++i) {
      CAPTURE(i);
      CHECK(test::relative_error(fused[i], plain[i]) < 1e-12);
    }
  }
}

TEST_CASE("gradcheck: fused attention") {
  const Tensor q = random_param({2, 2, 4, 3}, 20, -1, 1, DType::f64), k = random_param({2, 2, 5, 3}, 21, -1, 1, DType::f64),
               v = random_param({2, 2, 5, 3}, 22, -1, 1, DType::f64);
  const auto r = gradcheck(
      [](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], 0.7); }, {q, k, v});
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("fused attention takes strided heads, writes [B, T, H, D] memory, and keeps no probabilities") {
  // q, k, v as nn::Attention makes them: views of one [B, T, 3, H, D] buffer.
  const int64_t b = 2, t = 6, h = 3, d = 4;
  Tensor qkv = test::random_tensor({b, t, 3, h, d}, 30);
  qkv.set_requires_grad(true);
  auto head = [&](int64_t i) { return permute(select(qkv, 2, i), {0, 2, 1, 3}); };
  const Tensor q = head(0), k = head(1), v = head(2);
  const Tensor out = scaled_dot_product_attention(q, k, v, 0.5);
  CHECK(out.shape() == Shape({b, h, t, d}));
  CHECK(out.stride(0) == t * h * d);
  CHECK(out.stride(1) == d);
  CHECK(out.stride(2) == h * d);
  CHECK(host_values(out) == host_values(scaled_dot_product_attention(q.raw_contiguous(), k.raw_contiguous(),
                                                                     v.raw_contiguous(), 0.5)));
  // What backward keeps: q, k, v (one storage: qkv), out and the f32 row log-sum-exp.
  REQUIRE(out.grad_fn());
  CHECK(out.grad_fn()->name() == "AttentionBackward");
  CHECK(out.grad_fn()->saved_bytes() == qkv.nbytes() + out.nbytes() + static_cast<size_t>(b * h * t) * 4);
}

TEST_CASE("fused attention writes the gradients of unbound qkv heads into one buffer: the same gradient as copies") {
  const int64_t b = 2, t = 7, h = 3, d = 8;
  const Tensor upstream = test::random_tensor({b, h, t, d}, 36);
  auto qkv_grad = [&](bool unbound) {
    Tensor qkv = test::random_tensor({b, t, 3, h, d}, 35);
    qkv.set_requires_grad(true);
    std::vector<Tensor> parts = unbind(qkv, 2);
    if (!unbound)  // copies: the heads are no longer slices of one buffer
      for (Tensor& p : parts) p = contiguous(permute(p, {0, 2, 1, 3}));
    else
      for (Tensor& p : parts) p = permute(p, {0, 2, 1, 3});
    backward(scaled_dot_product_attention(parts[0], parts[1], parts[2], 0.35), upstream);
    return host_values(qkv.grad());
  };
  CHECK(qkv_grad(true) == qkv_grad(false));
}

TEST_CASE("fused attention in bf16 is within bf16 rounding of f32") {
  const Tensor q = test::random_tensor({2, 2, 33, 16}, 40), k = test::random_tensor({2, 2, 33, 16}, 41),
               v = test::random_tensor({2, 2, 33, 16}, 42);
  const auto in_f32 = attention_results([](auto& x, auto& y, auto& z) { return scaled_dot_product_attention(x, y, z, 0.25); }, q, k, v);
  const auto in_bf16 = attention_results([](auto& x, auto& y, auto& z) { return scaled_dot_product_attention(x, y, z, 0.25); },
                               q.to(DType::bf16), k.to(DType::bf16), v.to(DType::bf16));
  for (size_t i = 0; i < in_f32.size(); ++i) {
    CAPTURE(i);
    CHECK(test::relative_error(in_bf16[i], in_f32[i]) < 3e-2);
  }
}

TEST_CASE("fused attention errors say what was expected") {
  const Tensor x = zeros({2, 3, 4, 5});
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(zeros({3, 4, 5}), x, x, 1),
                       "scaled_dot_product_attention: expected q, k, v [B, H, T, D], got [3, 4, 5], [2, 3, 4, 5], "
                       "[2, 3, 4, 5]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(x, zeros({2, 3, 4, 6}), x, 1),
                       "scaled_dot_product_attention: expected q [B, H, Tq, D] and k, v [B, H, Tk, D], got "
                       "[2, 3, 4, 5], [2, 3, 4, 6], [2, 3, 4, 5]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(x, x, x.to(DType::f64), 1),
                       "scaled_dot_product_attention: expected all tensors of dtype f32, got f64", TypeError);
  const Tensor none = zeros({2, 3, 0, 5});
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(x, none, none, 1),
                       "scaled_dot_product_attention: k and v have no tokens (shape [2, 3, 0, 5])", ShapeError);
}

TEST_CASE("the CUDA attention backend: names, the process-wide setting, and the CPU ignores it") {
  CHECK(parse_cuda_attention_backend("auto") == CudaAttentionBackend::automatic);
  CHECK(parse_cuda_attention_backend("cudnn") == CudaAttentionBackend::cudnn);
  CHECK(parse_cuda_attention_backend("tapegrad") == CudaAttentionBackend::tapegrad);
  CHECK_THROWS_WITH_AS(parse_cuda_attention_backend("flash"),
                       "--attention-backend: unknown value 'flash' (expected auto, cudnn, tapegrad)", ValueError);
  CHECK(cuda_attention_backend() == CudaAttentionBackend::automatic);
  const Tensor x = test::random_tensor({1, 2, 5, 8}, 77);
  const Tensor automatic = scaled_dot_product_attention(x, x, x, 0.5);
  set_cuda_attention_backend(CudaAttentionBackend::cudnn);
  CHECK(cuda_attention_backend() == CudaAttentionBackend::cudnn);
  const Tensor forced = scaled_dot_product_attention(x, x, x, 0.5);  // the CPU has one implementation
  set_cuda_attention_backend(CudaAttentionBackend::automatic);
  CHECK(test::host_values(forced) == test::host_values(automatic));
}
