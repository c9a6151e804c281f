// Sampling the attention scores S = Q·Kᵀ (issue 12): each operand gradient has a strategy of its
// own, with its own proxy (dQ's tracks dS's column norms, dK's its row norms), and dQ's strategy
// samples the keys centred over the tokens, which leaves the exact dQ unchanged (softmax's input
// gradient has rows that sum to zero) and keeps a key component common to all tokens out of
// the variance.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/engine.h"
#include "ops/elementwise.h"
#include "ops/matmul/matmul.h"
#include "ops/matmul/sampled.h"
#include "ops/reduce.h"
#include "ops/softmax.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;
using test::random_tensor;

namespace {

StrategyConfig wta(uint64_t seed, ProxyKind proxy, double ema_beta = 0.9) {
  StrategyConfig c;
  c.kind = StrategyKind::wta_crs;
  c.ratio = 0.3;
  c.seed = seed;
  c.proxy = proxy;
  c.ema_beta = ema_beta;
  return c;
}

}  // namespace

TEST_CASE("the two operand gradients of Q·Kᵀ have their own proxies: dQ's follows dS's columns, dK's its rows") {
  const int64_t batch = 2, tokens = 40, d = 8;
  Tensor q = random_tensor({batch, tokens, d}, 801), k = random_tensor({batch, tokens, d}, 802);
  q.set_requires_grad(true);
  k.set_requires_grad(true);
  // dS with columns (key positions) scaled 1..30 and rows of equal scale.
  std::vector<float> ramp(static_cast<size_t>(tokens));
  for (int64_t n = 0; n < tokens; ++n) ramp[static_cast<size_t>(n)] = 1.0f + 29.0f * static_cast<float>(n) / (tokens - 1);
  const Tensor ds = random_tensor({batch, tokens, tokens}, 803) * from_vector(ramp, {1, 1, tokens});
  SamplingStrategy for_q(wta(1, ProxyKind::position_ema, 0.0), 0), for_k(wta(1, ProxyKind::position_ema, 0.0), 1);
  backward(matmul(q, k, false, true, &for_q, &for_k), ds);
  // With beta 0 each proxy is the mean gradient-row norm per position of its own contraction.
  const auto pq = for_q.proxy().to_vector<float>(), pk = for_k.proxy().to_vector<float>();
  CHECK(pq.back() / pq.front() > 15);  // the 30x column ramp (row-norm noise aside)
  const auto [kmin, kmax] = std::minmax_element(pk.begin(), pk.end());
  CHECK(*kmax / *kmin < 2);  // rows of dS have no ramp
}

TEST_CASE("dQ's strategy centres the keys: unbiased, and a common key offset adds no variance") {
  const int64_t batch = 4, tokens = 30, d = 8;
  const Tensor q = random_tensor({batch, tokens, d}, 811), g = random_tensor({batch, tokens, tokens}, 812);
  const Tensor spread = random_tensor({batch, tokens, d}, 813);
  auto rel_mse = [&](double offset) {
    const Tensor k = spread + full({1, 1, d}, offset);
    auto dq = [&](BackwardStrategy* for_q) {
      Tensor qq = q.clone();
      qq.set_requires_grad(true);
      backward(softmax(matmul(qq, k, false, true, for_q, nullptr, /*grad_rows_sum_to_zero=*/true)), g);
      return host_values(qq.grad());
    };
    const std::vector<double> exact = dq(nullptr);
    std::vector<double> mean(exact.size(), 0);
    double mse = 0, exact_sq = 0;
    const int trials = 400;
    for (int t = 0; t < trials; ++t) {
      SamplingStrategy for_q(wta(static_cast<uint64_t>(t), ProxyKind::none), 0);
      const std::vector<double> v = dq(&for_q);
      for (size_t i = 0; i < v.size(); ++i) {
        mean[i] += v[i] / trials;
        mse += (v[i] - exact[i]) * (v[i] - exact[i]) / trials;
      }
    }
    double bias_sq = 0;
    for (size_t i = 0; i < exact.size(); ++i) {
      exact_sq += exact[i] * exact[i];
      bias_sq += (mean[i] - exact[i]) * (mean[i] - exact[i]);
    }
    CHECK(bias_sq < 0.05 * mse);  // the mean of 400 unbiased draws: within sampling noise
    return mse / exact_sq;
  };
  const double plain = rel_mse(0.0), offset = rel_mse(10.0);
  MESSAGE("relative MSE of dQ: offset 0 -> " << plain << ", offset 10x the spread -> " << offset);
  CHECK(offset < 1.1 * plain);  // without centring it grows ~100-fold (issue 12's probe: 2.0 -> 285)
}
