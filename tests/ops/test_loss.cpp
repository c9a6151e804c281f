// cross_entropy on the CPU: f64 references with and without label smoothing, i64 and i32
// targets, gradcheck, what backward keeps, and errors (including out-of-range targets).
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "ops/loss.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;
using test::random_tensor;

namespace {

// Targets 0..C-1 from a fixed pattern that visits every class.
std::vector<int64_t> make_targets(int64_t n, int64_t c) {
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = (i * 7 + 3) % c;
  return t;
}

double reference(const Tensor& logits, const std::vector<int64_t>& targets, double eps) {
  const auto v = host_values(logits);
  const int64_t n = logits.size(0), c = logits.size(1);
  double loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double* row = v.data() + i * c;
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < c; ++j) m = std::max(m, row[j]);
    for (int64_t j = 0; j < c; ++j) s += std::exp(row[j] - m);
    const double lse = m + std::log(s);
    double smooth = 0;  // mean over classes of -log p
    for (int64_t j = 0; j < c; ++j) smooth += (lse - row[j]) / static_cast<double>(c);
    loss += (1 - eps) * (lse - row[targets[static_cast<size_t>(i)]]) + eps * smooth;
  }
  return loss / static_cast<double>(n);
}

}  // namespace

TEST_CASE("cross_entropy matches f64 references, with label smoothing and both target dtypes") {
  uint64_t seed = 400;
  for (const Shape& shape : std::vector<Shape>{{1, 7}, {5, 10}, {3, 1}, {33, 100}, {4, 1000}}) {
    CAPTURE(shape.str());
    const Tensor logits = random_tensor(shape, seed++, -5, 5);
    const auto t = make_targets(shape[0], shape[1]);
    const Tensor targets = from_vector(t, {shape[0]});
    for (double eps : {0.0, 0.1, 1.0}) {
      CAPTURE(eps);
      const Tensor loss = cross_entropy(logits, targets, eps);
      CHECK(loss.dim() == 0);
      CHECK(loss.dtype() == DType::f32);
      CHECK(loss.item() == doctest::Approx(reference(logits, t, eps)).epsilon(1e-5));
      CHECK(cross_entropy(logits, targets.to(DType::i32), eps).item() == loss.item());
      CHECK(cross_entropy(logits.to(DType::f64), targets, eps).item() ==
            doctest::Approx(reference(logits, t, eps)).epsilon(1e-12));
    }
  }
  // Uniform logits: log C whatever the target and smoothing.
  CHECK(cross_entropy(zeros({3, 10}), from_vector<int64_t>({0, 4, 9}, {3}), 0.3).item() ==
        doctest::Approx(std::log(10.0)).epsilon(1e-6));
  const Tensor big = random_tensor({4, 20}, 410, 500, 520);  // stable for large logits
  CHECK(cross_entropy(big, from_vector(make_targets(4, 20), {4})).item() ==
        doctest::Approx(reference(big, make_targets(4, 20), 0)).epsilon(1e-4));
}

TEST_CASE("gradcheck: cross_entropy") {
  uint64_t seed = 420;
  for (const Shape& shape : std::vector<Shape>{{4, 5}, {1, 3}, {3, 1}}) {
    for (double eps : {0.0, 0.25}) {
      CAPTURE(shape.str());
      CAPTURE(eps);
      Tensor logits = random_tensor(shape, seed++, -2, 2, DType::f64);
      logits.set_requires_grad(true);
      const Tensor targets = from_vector(make_targets(shape[0], shape[1]), {shape[0]}).to(DType::i32);
      const auto r = gradcheck(
          [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], targets, eps); }, {logits});
      CHECK_MESSAGE(r.ok, r.message);
    }
  }
}

TEST_CASE("cross_entropy backward keeps the logits and one log-sum-exp per row") {
  Tensor logits = random_tensor({6, 10}, 430);
  logits.set_requires_grad(true);
  const Tensor targets = from_vector(make_targets(6, 10), {6});
  const Tensor loss = cross_entropy(logits, targets);
  REQUIRE(loss.grad_fn());
  CHECK(loss.grad_fn()->name() == "CrossEntropyBackward");
  CHECK(loss.grad_fn()->saved_bytes() == logits.nbytes() + targets.nbytes() + 6 * sizeof(float));
  backward(loss);
  // Every row of the gradient sums to 0 (softmax and the smoothed one-hot both sum to 1).
  const auto g = host_values(logits.grad());
  for (size_t r = 0; r < 6; ++r) {
    double s = 0;
    for (size_t j = 0; j < 10; ++j) s += g[r * 10 + j];
    CHECK(std::abs(s) < 1e-7);
  }
}

TEST_CASE("cross_entropy errors") {
  const Tensor logits = zeros({4, 10});
  const Tensor targets = zeros({4}, DType::i64);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({4, 10, 2}), targets),
                       "cross_entropy: expected logits of shape [N, C], got [4, 10, 2]", ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, zeros({5}, DType::i64)),
                       "cross_entropy: expected targets of shape [4] for logits of shape [4, 10], got [5]", ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, zeros({4, 1}, DType::i64)),
                       "cross_entropy: expected targets of shape [4] for logits of shape [4, 10], got [4, 1]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, zeros({4})), "cross_entropy: expected targets of dtype i64 or i32, got f32",
                       TypeError);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, targets, 1.5), "cross_entropy: expected label_smoothing in [0, 1], got 1.5",
                       ValueError);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, targets, -0.1),
                       "cross_entropy: expected label_smoothing in [0, 1], got -0.1", ValueError);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({5, 10}), from_vector<int64_t>({0, 1, 2, 12, 3}, {5})),
                       "cross_entropy: target 12 at row 3 is out of range for 10 classes", IndexError);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({2, 10}), from_vector<int32_t>({-1, 0}, {2})),
                       "cross_entropy: target -1 at row 0 is out of range for 10 classes", IndexError);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({2, 3}, DType::i64), zeros({2}, DType::i64)),
                       "cross_entropy: expected floating logits, got i64", TypeError);
}
