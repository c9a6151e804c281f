// cross_entropy on CUDA against the CPU (loss and logits gradient) for class counts that take
// the warp-per-row and block-per-row paths, and the NaN contract for out-of-range targets.
#include <doctest/doctest.h>

#include <cmath>

#include "ops/loss.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::check_cuda_matches_cpu;
using test::random_tensor;

namespace {
Tensor make_targets(int64_t n, int64_t c, DType dtype) {
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = (i * 13 + 5) % c;
  return from_vector(t, {n}).to(dtype);
}
}  // namespace

TEST_CASE("cross_entropy: CUDA matches CPU for short and long rows, with label smoothing") {
  uint64_t seed = 800;
  for (const auto& [n, c] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 7}, {64, 10}, {33, 100}, {16, 1000}, {8, 1024}, {5, 1025}, {12, 5000}, {4096, 10}}) {
    for (double eps : {0.0, 0.1}) {
      CAPTURE(n);
      CAPTURE(c);
      CAPTURE(eps);
      Tensor logits = random_tensor({n, c}, seed++, -8, 8);
      logits.set_requires_grad(true);
      const Tensor targets = make_targets(n, c, seed % 2 ? DType::i64 : DType::i32);
      check_cuda_matches_cpu(
          [eps](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], eps); }, {logits, targets});
    }
  }
}

TEST_CASE("cross_entropy on CUDA: an out-of-range target gives a NaN loss and gradient row, no exception") {
  for (int64_t c : {10, 3000}) {
    CAPTURE(c);
    Tensor logits = random_tensor({4, c}, 850).to(Device::cuda(0));
    logits.set_requires_grad(true);
    const Tensor targets = from_vector<int64_t>({1, c + 2, 0, 3}, {4}, Device::cuda(0));
    Tensor loss;
    CHECK_NOTHROW(loss = cross_entropy(logits, targets));
    CHECK(std::isnan(loss.item()));
    backward(loss);
    const auto g = logits.grad().to_vector<float>();
    CHECK(std::isnan(g[static_cast<size_t>(c)]));  // row 1
    CHECK(!std::isnan(g[0]));
    const Tensor negative = from_vector<int32_t>({1, 2, -1, 3}, {4}, Device::cuda(0));
    CHECK(std::isnan(cross_entropy(logits.detach(), negative).item()));
  }
}
