// WTA-WOR (take-all rows plus systematic sampling without replacement, docs/WTACRS.md §2b) on
// the CPU: k distinct rows with positive weights (no padding), the take-all rule, unbiasedness,
// the measured MSE against the design's exact variance, and the gain over WTA-CRS at equal k.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/engine.h"
#include "ops/elementwise.h"
#include "ops/matmul/linear.h"
#include "ops/matmul/sampled.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;
using test::random_tensor;

namespace {

// Rows with log-normal norms (spread sigma): sigma 0 is near-uniform p, 1.5 makes take-all rows.
Tensor rows_with_spread(int64_t n, int64_t d, double sigma, uint64_t seed) {
  Generator g(seed);
  return randn({n, d}, DType::f32, Device::cpu(), g) * exp(randn({n, 1}, DType::f32, Device::cpu(), g, 0, sigma));
}

StrategyConfig sampled(StrategyKind kind, double ratio, uint64_t seed) {
  StrategyConfig c;
  c.kind = kind;
  c.ratio = ratio;
  c.seed = seed;
  c.proxy = ProxyKind::none;  // the estimator itself: p ∝ ||x||
  return c;
}

// dW of y = x·Wᵀ for the upstream gradient g, through `strategy` (exact when null).
std::vector<double> weight_grad(const Tensor& x, const Tensor& g, BackwardStrategy* strategy) {
  Tensor w = random_tensor({g.size(1), x.size(1)}, 3);
  w.set_requires_grad(true);
  backward(linear(x, w, Tensor(), strategy), g);
  return host_values(w.grad());
}

struct Estimates {
  std::vector<double> mean;
  double mse = 0, max_z = 0;
};

// Mean, MSE and the largest |mean - exact| in standard errors over `trials` seeds; a NaN or
// infinite estimate makes max_z infinite.
Estimates estimate(StrategyKind kind, const Tensor& x, const Tensor& g, double ratio, int trials) {
  const std::vector<double> exact = weight_grad(x, g, nullptr);
  std::vector<double> sum(exact.size(), 0), sum_sq(exact.size(), 0);
  Estimates e;
  for (int t = 0; t < trials; ++t) {
    auto strategy = make_strategy(sampled(kind, ratio, static_cast<uint64_t>(t)), 0);
    const std::vector<double> v = weight_grad(x, g, strategy.get());
    for (size_t i = 0; i < v.size(); ++i) {
      sum[i] += v[i];
      sum_sq[i] += v[i] * v[i];
      e.mse += (v[i] - exact[i]) * (v[i] - exact[i]) / trials;
    }
  }
  for (size_t i = 0; i < exact.size(); ++i) {
    const double mean = sum[i] / trials, var = std::max(sum_sq[i] / trials - mean * mean, 1e-30);
    const double z = std::abs(mean - exact[i]) / std::sqrt(var / trials);
    e.max_z = std::isfinite(z) ? std::max(e.max_z, z) : INFINITY;
  }
  return e;
}

double squared_norm(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e * e;
  return s;
}

}  // namespace

TEST_CASE("wta-wor keeps k distinct rows with positive weights: take-all rows first with weight 1, no padding") {
  for (const double sigma : {0.0, 1.0, 2.5}) {
    CAPTURE(sigma);
    const Tensor x = rows_with_spread(4 * 150, 8, sigma, 40 + static_cast<uint64_t>(sigma * 10)).raw_reshape({4, 150, 8});
    const Tensor s = row_norms(x);
    const SamplingConfig config{45, 0.05, SamplingVariant::wta_wor};
    const RowSample sample = sample_rows(s, config, 5, 9);
    const auto indices = sample.indices.to_vector<int32_t>();
    const auto weights = sample.weights.to_vector<float>();
    for (int64_t b = 0; b < 4; ++b) {
      CAPTURE(b);
      const std::vector<int32_t> item(indices.begin() + b * 45, indices.begin() + (b + 1) * 45);
      CHECK(std::set<int32_t>(item.begin(), item.end()).size() == 45);
      const SamplingPlan plan = plan_sample(s.raw_select(0, b).to_vector<float>(), config);
      CHECK(plan.draws == 45 - static_cast<int64_t>(plan.winners.size()));
      for (size_t j = 0; j < 45; ++j) {
        const float w = weights[static_cast<size_t>(b) * 45 + j];
        CHECK(w > 0);
        if (j < plan.winners.size()) {
          CHECK(item[j] == plan.winners[j]);
          CHECK(w == 1.0f);
        } else {  // 1 / π with π = s p / rest < 1
          CHECK(w == doctest::Approx(plan.rest_mass / (plan.draws * plan.p[static_cast<size_t>(item[j])])).epsilon(1e-6));
          CHECK(w > 1.0f);
        }
      }
      if (sigma == 2.5) CHECK(!plan.winners.empty());  // a wide spread has take-all rows
      if (sigma == 0.0) CHECK(plan.winners.empty());
    }
  }
}

TEST_CASE("wta-wor dW is unbiased and its MSE matches the systematic design's exact variance") {
  for (const double sigma : {0.3, 1.5}) {
    CAPTURE(sigma);
    const Tensor x = rows_with_spread(60, 6, sigma, 61), g = rows_with_spread(60, 5, 0.5, 62);
    const int trials = 3000;
    const Estimates e = estimate(StrategyKind::wta_wor, x, g, 0.3, trials);
    CHECK(e.max_z < 4.5);
    const SamplingPlan plan = plan_sample(row_norms(x.raw_unsqueeze(0)).to_vector<float>(),
                                          {sample_budget(60, 0.3, 10), 0.05, SamplingVariant::wta_wor});
    const double predicted = predicted_mse(plan, host_values(x), 6, host_values(g), 5);
    CHECK(predicted > 0);
    CHECK(e.mse == doctest::Approx(predicted).epsilon(0.12));
  }
}

TEST_CASE("at the same k, wta-wor has a lower MSE than wta-crs, about (1 - rho) of it for near-uniform p") {
  const Tensor x = rows_with_spread(80, 6, 0.1, 71), g = rows_with_spread(80, 5, 0.1, 72);
  const double ratio = 0.5;
  const Estimates wor = estimate(StrategyKind::wta_wor, x, g, ratio, 1500);
  const Estimates crs = estimate(StrategyKind::wta_crs, x, g, ratio, 1500);
  const double exact_sq = squared_norm(weight_grad(x, g, nullptr));
  MESSAGE("relative MSE: wta-wor " << wor.mse / exact_sq << ", wta-crs " << crs.mse / exact_sq);
  CHECK(wor.mse < 0.75 * crs.mse);
  CHECK(wor.mse > 0.25 * crs.mse);  // roughly 1 - rho = 0.5, not an artifact of a degenerate case
}
