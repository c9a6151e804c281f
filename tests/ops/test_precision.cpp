// The precision policy: its default, the scoped guard (nesting, restored on throw), the GEMM
// compute dtype (bf16 against the product of bf16-rounded operands), TF32 as a no-op on the
// CPU, and the saved dtype read by the strategies when a node saves.
#include <doctest/doctest.h>

#include <stdexcept>

#include "autograd/engine.h"
#include "ops/matmul/gemm.h"
#include "ops/matmul/linear.h"
#include "ops/precision.h"
#include "ops/reduce.h"
#include "ops/shape_ops.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;
using test::random_tensor;

TEST_CASE("the default policy is plain fp32, and guards nest and restore, also on a throw") {
  CHECK(precision_policy() == PrecisionPolicy{});
  CHECK(precision_policy().str() == "gemm same, tf32 off, saved same");
  PrecisionPolicy outer;
  outer.allow_tf32 = true;
  PrecisionPolicy inner;
  inner.gemm_dtype = DType::bf16;
  inner.saved_dtype = DType::bf16;
  {
    PrecisionGuard a(outer);
    CHECK(precision_policy() == outer);
    try {
      PrecisionGuard b(inner);
      CHECK(precision_policy().str() == "gemm bf16, tf32 off, saved bf16");
      throw std::runtime_error("leave the scope");
    } catch (const std::runtime_error&) {
    }
    CHECK(precision_policy() == outer);
  }
  CHECK(precision_policy() == PrecisionPolicy{});
}

TEST_CASE("gemm in bf16: the product of the bf16-rounded operands, returned in f32") {
  const Tensor a = random_tensor({2, 7, 5}, 700), b = random_tensor({2, 5, 3}, 701), bias = random_tensor({3}, 702);
  PrecisionPolicy policy;
  policy.gemm_dtype = DType::bf16;
  Tensor in_bf16;
  {
    PrecisionGuard guard(policy);
    in_bf16 = gemm(a, false, b, false, bias);
  }
  CHECK(in_bf16.dtype() == DType::f32);
  const Tensor expected =
      gemm(a.to(DType::bf16), false, b.to(DType::bf16), false, bias.to(DType::bf16)).to(DType::f32);
  CHECK(host_values(in_bf16) == host_values(expected));
  // Really rounded: the plain f32 product differs.
  CHECK(host_values(gemm(a, false, b, false, bias)) != host_values(in_bf16));
}

TEST_CASE("TF32 changes nothing on the CPU") {
  const Tensor a = random_tensor({9, 4}, 703), b = random_tensor({6, 4}, 704);
  const std::vector<double> plain = host_values(gemm(a, false, b, true));
  PrecisionPolicy policy;
  policy.allow_tf32 = true;
  PrecisionGuard guard(policy);
  CHECK(host_values(gemm(a, false, b, true)) == plain);
}

TEST_CASE("the saved dtype is read when a node saves: bf16 halves what an exact linear keeps") {
  const Tensor x = random_tensor({4, 16, 8}, 705);
  Tensor w = random_tensor({3, 8}, 706);
  w.set_requires_grad(true);
  const size_t same = linear(x, w).grad_fn()->saved_bytes();
  PrecisionPolicy policy;
  policy.saved_dtype = DType::bf16;
  PrecisionGuard guard(policy);
  CHECK(same == static_cast<size_t>(4 * 16 * 8 * 4));
  CHECK(linear(x, w).grad_fn()->saved_bytes() == static_cast<size_t>(4 * 16 * 8 * 2));
}

TEST_CASE("precision dtype names") {
  CHECK_FALSE(parse_precision_dtype("same", "--saved-dtype").has_value());
  CHECK(parse_precision_dtype("bf16", "--saved-dtype") == DType::bf16);
  CHECK(precision_dtype_name(std::nullopt) == "same");
  CHECK(precision_dtype_name(DType::bf16) == "bf16");
  CHECK_THROWS_WITH_AS(parse_precision_dtype("fp16", "--saved-dtype"), "--saved-dtype must be same or bf16, got 'fp16'",
                       ValueError);
}

TEST_CASE("backward GEMMs run in the policy of their forward, whatever is current at backward") {
  const Tensor x = random_tensor({6, 5}, 707), g = random_tensor({6, 4}, 708);
  auto weight_grad = [&](bool backward_in_scope) {
    Tensor w = random_tensor({4, 5}, 709);
    w.set_requires_grad(true);
    PrecisionPolicy bf16_gemms;
    bf16_gemms.gemm_dtype = DType::bf16;
    Tensor y;
    {
      PrecisionGuard guard(bf16_gemms);
      y = linear(x, w);
      if (backward_in_scope) backward(y, g);
    }
    if (!backward_in_scope) backward(y, g);
    return host_values(w.grad());
  };
  const std::vector<double> outside = weight_grad(false);
  CHECK(outside == weight_grad(true));
  // And that is the bf16 product dW = round(G)ᵀ·round(X), not the f32 one.
  const Tensor bf16_dw =
      gemm(g.to(DType::bf16), true, x.to(DType::bf16), false).to(DType::f32);
  CHECK(outside == host_values(bf16_dw));
}

TEST_CASE("precision modes, and autocast casting only f32 tensors, only when the policy asks") {
  CHECK(precision_mode("fp32") == PrecisionPolicy{});
  CHECK(precision_mode("tf32").allow_tf32);
  CHECK(precision_mode("bf16").autocast_dtype == DType::bf16);
  CHECK(precision_mode("bf16").str() == "gemm same, tf32 off, saved same, autocast bf16");
  CHECK_THROWS_WITH_AS(precision_mode("fp16"), "--precision: unknown value 'fp16' (expected fp32, tf32, bf16)",
                       ValueError);
  Tensor x = random_tensor({3, 4}, 720);
  x.set_requires_grad(true);
  CHECK(autocast(x).dtype() == DType::f32);  // no autocast in the default policy
  const PrecisionGuard guard(precision_mode("bf16"));
  const Tensor y = autocast(x);
  CHECK(y.dtype() == DType::bf16);
  CHECK(host_values(y) == host_values(x.to(DType::bf16)));
  CHECK(autocast(x.to(DType::f64)).dtype() == DType::f64);  // only f32 is cast
  CHECK(!autocast(Tensor()).defined());
  backward(sum(cast(y, DType::f32)));
  CHECK(x.grad().dtype() == DType::f32);  // the cast's backward returns the f32 gradient
  CHECK(host_values(x.grad()) == std::vector<double>(12, 1.0));
}

TEST_CASE("the autocast weight cache: the linears take its copies, bit for bit what they would make, inside it only") {
  Tensor w = random_tensor({6, 8}, 730), b = random_tensor({6}, 731), conv = random_tensor({6, 2, 2, 2}, 732);
  for (Tensor* t : {&w, &b, &conv}) t->set_requires_grad(true);
  const Tensor x = random_tensor({5, 8}, 733).to(DType::bf16);
  const Tensor g = random_tensor({5, 6}, 734).to(DType::bf16);
  auto run = [&](const Tensor& weight) {
    for (Tensor* t : {&w, &b, &conv}) t->set_grad(Tensor());
    const Tensor y = linear(x, weight, b);
    backward(y, g);
    return std::vector<std::vector<double>>{host_values(y), host_values(w.grad().defined() ? w.grad() : conv.grad()),
                                            host_values(b.grad())};
  };
  const auto plain = run(w);
  CHECK_FALSE(AutocastWeightCache::find(w, DType::bf16).defined());  // no cache
  {
    const AutocastWeightCache cache({w, b, conv}, DType::bf16);
    const Tensor copy = AutocastWeightCache::find(w, DType::bf16);
    REQUIRE(copy.defined());
    CHECK(copy.dtype() == DType::bf16);
    CHECK(host_values(copy) == host_values(w.to(DType::bf16)));
    CHECK(AutocastWeightCache::find(w, DType::bf16).same(copy));  // one copy per step, not per use
    CHECK_FALSE(AutocastWeightCache::find(w, DType::f64).defined());
    CHECK_FALSE(AutocastWeightCache::find(random_tensor({6, 8}, 735), DType::bf16).defined());
    CHECK(run(w) == plain);
    // A reshaped view of a cached parameter (the patch embedding's kernel) finds its copy, viewed.
    const Tensor flat = reshape(conv, {6, 8});
    const Tensor flat_copy = AutocastWeightCache::find(flat, DType::bf16);
    REQUIRE(flat_copy.defined());
    CHECK(flat_copy.shape() == Shape({6, 8}));
    CHECK(host_values(flat_copy) == host_values(conv.to(DType::bf16)));
    {
      const AutocastWeightCache inner({b}, DType::bf16);  // the innermost cache is searched
      CHECK_FALSE(AutocastWeightCache::find(w, DType::bf16).defined());
    }
    CHECK(AutocastWeightCache::find(w, DType::bf16).same(copy));
  }
  CHECK_FALSE(AutocastWeightCache::find(w, DType::bf16).defined());
}
