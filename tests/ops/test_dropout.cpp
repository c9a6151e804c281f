// dropout on the CPU: the mask follows the documented Philox layout, keeps about 1 - p of the
// elements (4-sigma bound), scales kept values exactly, backward reuses the forward mask without
// saving it, eval mode and p = 0 are the identity, gradcheck, and errors; drop_path (per-sample
// masks from the same layout, a node that keeps B values, gradcheck, errors).
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "core/philox.h"
#include "ops/dropout.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::random_tensor;

TEST_CASE("dropout keeps element i iff its Philox uniform is >= p, scaled exactly by 1/(1-p)") {
  for (double p : {0.1, 0.5, 0.9}) {
    CAPTURE(p);
    const Tensor x = random_tensor({37, 1001}, 500, 1, 2);  // never 0: a zero output means dropped
    Generator generator(1234);
    generator.set_offset(77);
    const Tensor y = dropout(x, p, true, generator);
    CHECK(generator.offset() == 77 + (static_cast<uint64_t>(x.numel()) + 3) / 4);
    const auto xv = x.to_vector<float>(), yv = y.to_vector<float>();
    const float scale = static_cast<float>(1.0 / (1.0 - p));
    int64_t kept = 0, mismatches = 0;
    for (size_t i = 0; i < xv.size(); ++i) {
      const bool keep = philox::uniform_element(1234, 77, i) >= p;
      kept += keep;
      mismatches += yv[i] != (keep ? xv[i] * scale : 0.0f);
    }
    CHECK(mismatches == 0);
    const double n = static_cast<double>(xv.size());
    CHECK(std::abs(static_cast<double>(kept) / n - (1 - p)) < 4 * std::sqrt(p * (1 - p) / n));
  }
}

TEST_CASE("dropout draws a new mask each call and backward reuses the forward one") {
  Tensor x = random_tensor({3, 5, 33}, 510, 1, 2);
  x.set_requires_grad(true);
  Generator generator(99);
  const Tensor y1 = dropout(x, 0.4, true, generator), y2 = dropout(x, 0.4, true, generator);
  CHECK(y1.to_vector<float>() != y2.to_vector<float>());
  REQUIRE(y1.grad_fn());
  CHECK(y1.grad_fn()->name() == "DropoutBackward");
  CHECK(y1.grad_fn()->saved_bytes() == 0);
  backward(y1, ones(y1.shape()));
  const auto g = x.grad().to_vector<float>(), yv = y1.to_vector<float>();
  const float scale = static_cast<float>(1.0 / 0.6);
  int64_t mismatches = 0;
  for (size_t i = 0; i < g.size(); ++i) mismatches += g[i] != (yv[i] != 0.0f ? scale : 0.0f);
  CHECK(mismatches == 0);
}

TEST_CASE("dropout in eval mode or with p = 0 returns its input and records nothing") {
  Tensor x = random_tensor({2, 1, 7}, 520);
  x.set_requires_grad(true);
  Generator generator(5);
  CHECK(dropout(x, 0.5, false, generator).same(x));
  CHECK(dropout(x, 0.0, true, generator).same(x));
  CHECK(generator.offset() == 0);
  const Tensor strided = random_tensor({6, 4}, 521).raw_transpose(0, 1);
  const Tensor y = dropout(strided, 0.5, true, generator);
  CHECK(y.shape() == Shape{4, 6});
  Generator replay(5);
  CHECK(y.to_vector<float>() == dropout(strided.raw_contiguous(), 0.5, true, replay).to_vector<float>());
  const Tensor bf = dropout(random_tensor({100}, 522, 1, 2, DType::bf16), 0.5, true, generator);
  CHECK(bf.dtype() == DType::bf16);
}

TEST_CASE("gradcheck: dropout with a replayed generator") {
  Tensor x = random_tensor({4, 9}, 530, -2, 2, DType::f64);
  x.set_requires_grad(true);
  const auto r = gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator generator(31);
        return dropout(in[0], 0.3, true, generator);
      },
      {x});
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("dropout errors") {
  const Tensor x = zeros({3});
  CHECK_THROWS_WITH_AS(dropout(x, 1.0, true), "dropout: expected p in [0, 1), got 1", ValueError);
  CHECK_THROWS_WITH_AS(dropout(x, -0.5, false), "dropout: expected p in [0, 1), got -0.5", ValueError);
  CHECK_THROWS_WITH_AS(dropout(zeros({3}, DType::i64), 0.5, true), "dropout: expected a floating dtype, got i64",
                       TypeError);
}

TEST_CASE("drop_path keeps sample b iff Philox uniform b is >= p, scales it by 1/(1-p), and keeps B values") {
  constexpr double p = 0.3;
  Tensor x = random_tensor({400, 3, 5}, 540, 1, 2);  // never 0
  x.set_requires_grad(true);
  Generator generator(4321);
  generator.set_offset(9);
  const Tensor y = drop_path(x, p, true, generator);
  CHECK(generator.offset() == 9 + 100);  // 400 uniforms, four per block
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->name() == "DropPathBackward");
  CHECK(y.grad_fn()->saved_bytes() == 400 * 4);  // the per-sample scale only, not x
  const auto xv = x.to_vector<float>(), yv = y.to_vector<float>();
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  int64_t kept = 0, mismatches = 0;
  for (size_t b = 0; b < 400; ++b) {
    const bool keep = philox::uniform_element(4321, 9, b) >= p;
    kept += keep;
    for (size_t i = b * 15; i < (b + 1) * 15; ++i) mismatches += yv[i] != (keep ? xv[i] * scale : 0.0f);
  }
  CHECK(mismatches == 0);
  CHECK(std::abs(static_cast<double>(kept) / 400 - (1 - p)) < 4 * std::sqrt(p * (1 - p) / 400));
  backward(y, ones(y.shape()));
  const auto g = x.grad().to_vector<float>();
  int64_t grad_mismatches = 0;
  for (size_t i = 0; i < g.size(); ++i) grad_mismatches += g[i] != (yv[i] != 0.0f ? scale : 0.0f);
  CHECK(grad_mismatches == 0);
}

TEST_CASE("drop_path in eval mode or with p = 0 returns its input; gradcheck with a replayed generator") {
  Generator generator(5);
  const Tensor x = random_tensor({3, 4}, 550);
  CHECK(drop_path(x, 0.5, false, generator).same(x));
  CHECK(drop_path(x, 0.0, true, generator).same(x));
  CHECK(generator.offset() == 0);
  Tensor xd = random_tensor({6, 2, 3}, 551, -2, 2, DType::f64);
  xd.set_requires_grad(true);
  const auto r = gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator replay(32);
        return drop_path(in[0], 0.5, true, replay);
      },
      {xd});
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("drop_path errors") {
  CHECK_THROWS_WITH_AS(drop_path(zeros({3}), 1.0, true), "drop_path: expected p in [0, 1), got 1", ValueError);
  CHECK_THROWS_WITH_AS(drop_path(zeros({3}, DType::i64), 0.5, true), "drop_path: expected a floating dtype, got i64",
                       TypeError);
  CHECK_THROWS_WITH_AS(drop_path(zeros({}), 0.5, true), "drop_path: expected x [B, ...] with a sample dim, got a scalar",
                       ShapeError);
}
