// Statistics of a random estimator for the sampled-strategy tests: the mean, variance and mean
// squared error of an estimate over independent trials, and the z-statistic of the mean against
// the exact value. A NaN or infinite estimate makes the statistic infinite, so it fails any bound.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace tg::test {

struct Moments {
  std::vector<double> mean, variance;  // per element; variance with the (trials - 1) divisor
  double mse = 0;                      // mean over trials of ||estimate - exact||²
};

// Moments of `estimate(trial)` for trial = 0 .. trials-1 around `exact` (one trial: variance 0).
// Deviations from `exact` are accumulated, so elements that every trial gets exactly right have
// mean == exact and variance 0 bit for bit.
inline Moments estimate_moments(const std::vector<double>& exact, int trials,
                                const std::function<std::vector<double>(uint64_t)>& estimate) {
  const size_t n = exact.size();
  std::vector<double> sum(n, 0.0), squares(n, 0.0);
  Moments m;
  for (int t = 0; t < trials; ++t) {
    const std::vector<double> e = estimate(static_cast<uint64_t>(t));
    for (size_t i = 0; i < n; ++i) {
      // A short estimate reads as NaN: it fails like a non-finite one.
      const double d = (i < e.size() ? e[i] : std::numeric_limits<double>::quiet_NaN()) - exact[i];
      sum[i] += d;
      squares[i] += d * d;
      m.mse += d * d;
    }
  }
  m.mse /= trials;
  for (size_t i = 0; i < n; ++i) {
    m.mean.push_back(exact[i] + sum[i] / trials);
    const double centred = squares[i] - sum[i] * sum[i] / trials;
    m.variance.push_back(std::isnan(centred) ? centred : std::max(centred, 0.0) / std::max(trials - 1, 1));
  }
  return m;
}

// z of one element: |mean - exact| in units of the standard error sqrt(variance / trials),
// with `resolution` (an absolute rounding allowance) added to it in quadrature. Infinite for a
// non-finite mean or variance, and for a nonzero difference with zero standard error.
inline double z_score(double mean, double variance, double exact, int trials, double resolution = 0) {
  const double diff = std::abs(mean - exact);
  if (!std::isfinite(diff) || !std::isfinite(variance)) return std::numeric_limits<double>::infinity();
  const double se = std::sqrt(variance / trials + resolution * resolution);
  if (se == 0) return diff == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return diff / se;
}

// The largest z_score over the elements (infinite if any element is non-finite).
inline double max_z(const Moments& m, const std::vector<double>& exact, int trials, double resolution = 0) {
  double worst = m.mean.size() == exact.size() ? 0.0 : std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < exact.size() && i < m.mean.size(); ++i) {
    const double z = z_score(m.mean[i], m.variance[i], exact[i], trials, resolution);
    if (!(z <= worst)) worst = z;  // NaN-proof: a NaN z would also replace the maximum
  }
  return worst;
}

}  // namespace tg::test
