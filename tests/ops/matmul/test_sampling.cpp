// The WTA-CRS row sampler on the CPU: the winner rule on hand-made probabilities and its edge
// cases, unbiasedness (z-bound from the measured variance) and the variance formula over many
// draws, merged duplicates, the row helpers against host loops, and argument errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "ops/matmul/sampling.h"
#include "tests/support/estimator_stats.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::estimate_moments;
using test::host_values;
using test::max_z;
using test::Moments;
using test::random_tensor;

namespace {

std::string variant_name(SamplingVariant variant) {
  return variant == SamplingVariant::wta_crs ? "wta_crs" : variant == SamplingVariant::crs ? "crs" : "topk";
}

RowSample sample_one(const std::vector<float>& scores, const SamplingConfig& config, uint64_t subsequence = 0) {
  return sample_rows(from_vector(scores, {1, static_cast<int64_t>(scores.size())}), config, 99, subsequence);
}

// Rows of an operand pair for the statistical tests: x [K, D] with log-normal row norms (spread
// sigma), g [K, E] standard normal. Exact C = Σ_i g_iᵀ x_i is [E, D].
struct Operands {
  int64_t K, D, E;
  std::vector<double> x, g, exact;
  std::vector<float> optimal_scores, rough_scores;  // ||x||·||g||, and ||x|| alone
};

Operands make_operands(int64_t K, int64_t D, int64_t E, double sigma, uint64_t seed) {
  Operands o{K, D, E, {}, {}, {}, {}, {}};
  Generator generator(seed);
  o.x = host_values(randn({K, D}, DType::f64, Device::cpu(), generator));
  o.g = host_values(randn({K, E}, DType::f64, Device::cpu(), generator));
  const auto spread = host_values(randn({K}, DType::f64, Device::cpu(), generator));
  o.exact.assign(static_cast<size_t>(E * D), 0.0);
  for (int64_t i = 0; i < K; ++i) {
    const double scale = std::exp(sigma * spread[static_cast<size_t>(i)]);
    double xx = 0, gg = 0;
    for (int64_t d = 0; d < D; ++d) {
      o.x[static_cast<size_t>(i * D + d)] *= scale;
      xx += o.x[static_cast<size_t>(i * D + d)] * o.x[static_cast<size_t>(i * D + d)];
    }
    for (int64_t e = 0; e < E; ++e) gg += o.g[static_cast<size_t>(i * E + e)] * o.g[static_cast<size_t>(i * E + e)];
    o.optimal_scores.push_back(static_cast<float>(std::sqrt(xx * gg)));
    o.rough_scores.push_back(static_cast<float>(std::sqrt(xx)));
    for (int64_t e = 0; e < E; ++e)
      for (int64_t d = 0; d < D; ++d)
        o.exact[static_cast<size_t>(e * D + d)] += o.g[static_cast<size_t>(i * E + e)] * o.x[static_cast<size_t>(i * D + d)];
  }
  return o;
}

// Moments of Ĉ = Σ_slots w g_idxᵀ x_idx over `draws` subsequences around the exact C. Every
// weight is multiplied by `bias`, to show that the z-test rejects a biased estimator.
Moments estimate(const Operands& o, const std::vector<float>& scores, const SamplingConfig& config, int draws,
                 double bias = 1.0) {
  return estimate_moments(o.exact, draws, [&](uint64_t s) {
    const RowSample sample = sample_one(scores, config, s);
    const auto idx = sample.indices.to_vector<int32_t>();
    const auto w = sample.weights.to_vector<float>();
    std::vector<double> c(static_cast<size_t>(o.E * o.D), 0.0);
    for (size_t j = 0; j < idx.size(); ++j) {
      const double weight = w[j] * bias;
      const int64_t row = idx[j];
      for (int64_t e = 0; e < o.E; ++e)
        for (int64_t d = 0; d < o.D; ++d)
          c[static_cast<size_t>(e * o.D + d)] +=
              weight * o.g[static_cast<size_t>(row * o.E + e)] * o.x[static_cast<size_t>(row * o.D + d)];
    }
    return c;
  });
}

}  // namespace

TEST_CASE("winner rule on hand-made probabilities") {
  SamplingConfig config{3, 0.0};
  SUBCASE("one dominant row is the only winner") {
    const SamplingPlan plan = plan_sample({0.05f, 0.5f, 0.2f, 0.1f, 0.1f, 0.05f}, config);
    CHECK(plan.winners == std::vector<int32_t>{1});  // ratios 0.5/2 = 0.25 < 1/3, then 0.3/1
    CHECK(plan.draws == 2);
    CHECK(plan.rest_mass == doctest::Approx(0.5));
    const RowSample sample = sample_one({0.05f, 0.5f, 0.2f, 0.1f, 0.1f, 0.05f}, config);
    CHECK(sample.indices.to_vector<int32_t>()[0] == 1);
    CHECK(sample.weights.to_vector<float>()[0] == 1.0f);
  }
  SUBCASE("two winners when the second lowers the ratio") {
    const SamplingPlan plan = plan_sample({0.05f, 0.4f, 0.05f, 0.4f, 0.05f, 0.05f}, config);
    CHECK(plan.winners == std::vector<int32_t>{1, 3});  // 0.6/2 = 0.3, then 0.2/1 = 0.2 < 1/3
    CHECK(plan.draws == 1);
  }
  SUBCASE("ties of the objective take the first minimum; ties of p the lower index") {
    const SamplingPlan plan = plan_sample({0.125f, 0.25f, 0.125f, 0.5f}, config);  // 0.5/2 == 0.25/1
    CHECK(plan.winners == std::vector<int32_t>{3});
    const SamplingPlan topk = plan_sample({0.125f, 0.25f, 0.125f, 0.5f}, {3, 0.0, SamplingVariant::topk});
    CHECK(topk.winners == std::vector<int32_t>{3, 1, 0});
  }
  SUBCASE("uniform p has no winners") {
    const SamplingPlan plan = plan_sample(std::vector<float>(50, 2.0f), {15});
    CHECK(plan.winners.empty());
    CHECK(plan.draws == 15);
    for (double p : plan.p) CHECK(p == doctest::Approx(1.0 / 50));
  }
  SUBCASE("alpha mixes in the uniform floor") {
    const SamplingPlan plan = plan_sample({3.0f, 1.0f, 0.0f, 0.0f}, {2, 0.2});
    CHECK(plan.p[0] == doctest::Approx(0.8 * 0.75 + 0.05));
    CHECK(plan.p[2] == doctest::Approx(0.05));
  }
}

TEST_CASE("edge cases: all mass in the top k, all-zero scores, crs and topk") {
  SUBCASE("P_C -> 1: the top k are all winners and nothing is drawn") {
    const std::vector<float> scores{0, 5, 0, 1, 0, 2, 0, 0};
    const SamplingPlan plan = plan_sample(scores, {3, 0.0});
    CHECK(plan.winners == std::vector<int32_t>{1, 5, 3});
    CHECK(plan.draws == 0);
    const RowSample sample = sample_one(scores, {3, 0.0});
    CHECK(sample.indices.to_vector<int32_t>() == std::vector<int32_t>{1, 5, 3});
    CHECK(sample.weights.to_vector<float>() == std::vector<float>{1, 1, 1});
  }
  SUBCASE("nearly all mass (tiny alpha): one draw left, almost surely the next row, weight ~ 1") {
    const std::vector<float> scores{0, 5, 0, 1, 0, 2, 0, 0};
    const SamplingPlan plan = plan_sample(scores, {3, 1e-9});
    CHECK(plan.winners == std::vector<int32_t>{1, 5});
    const RowSample sample = sample_one(scores, {3, 1e-9});
    CHECK(sample.indices.to_vector<int32_t>() == std::vector<int32_t>{1, 5, 3});
    CHECK(sample.weights.to_vector<float>()[2] == doctest::Approx(1.0).epsilon(1e-6));
  }
  SUBCASE("all-zero scores: uniform p, weights K/k per draw, summing to K") {
    const RowSample sample = sample_one(std::vector<float>(40, 0.0f), {10});
    const auto w = sample.weights.to_vector<float>();
    double total = 0;
    for (float v : w) {
      const double m = v * 10.0 / 40.0;  // multiplicity of the slot
      CHECK(std::abs(m - std::round(m)) < 1e-5);
      total += v;
    }
    CHECK(total == doctest::Approx(40.0));
  }
  SUBCASE("crs never has winners") {
    const std::vector<float> scores{100, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(plan_sample(scores, {3}).winners == std::vector<int32_t>{0});
    const SamplingPlan plan = plan_sample(scores, {3, 0.05, SamplingVariant::crs});
    CHECK(plan.winners.empty());
    CHECK(plan.draws == 3);
    const RowSample sample = sample_one(scores, {3, 0.05, SamplingVariant::crs});
    for (float w : sample.weights.to_vector<float>()) CHECK(w != 1.0f);
  }
  SUBCASE("topk keeps the k largest with weight 1, ties by index") {
    const std::vector<float> scores{1, 7, 3, 7, 0, 9, 3};
    const RowSample sample = sample_one(scores, {4, 0.05, SamplingVariant::topk});
    CHECK(sample.indices.to_vector<int32_t>() == std::vector<int32_t>{5, 1, 3, 2});
    CHECK(sample.weights.to_vector<float>() == std::vector<float>{1, 1, 1, 1});
  }
  SUBCASE("k = 1 draws one row with weight 1/p") {
    const std::vector<float> scores{1, 2, 3, 4};
    const SamplingPlan plan = plan_sample(scores, {1});
    const RowSample sample = sample_one(scores, {1});
    const int32_t row = sample.indices.to_vector<int32_t>()[0];
    CHECK(sample.weights.to_vector<float>()[0] == doctest::Approx(plan.rest_mass / plan.p[static_cast<size_t>(row)]));
  }
}

TEST_CASE("the estimate is unbiased: mean over 2000 draws within 4 standard errors of Gᵀ·X") {
  constexpr int kDraws = 2000;
  const Operands o = make_operands(200, 8, 6, 1.5, 4);
  for (const SamplingVariant variant : {SamplingVariant::wta_crs, SamplingVariant::crs}) {
    for (const bool optimal : {true, false}) {
      const SamplingConfig config{60, 0.05, variant};
      const auto& scores = optimal ? o.optimal_scores : o.rough_scores;
      const Moments stats = estimate(o, scores, config, kDraws);
      const double z = max_z(stats, o.exact, kDraws);
      MESSAGE(variant_name(variant), std::string(optimal ? " optimal" : " rough"),
              " proxy: winners ", plan_sample(scores, config).winners.size(), ", max |z| over 48 elements ", z);
      CHECK(z < 4.0);
    }
  }
  // The test has power: weights of the draws off by 10% are rejected.
  const SamplingConfig config{60, 0.05, SamplingVariant::crs};
  const double biased_z = max_z(estimate(o, o.optimal_scores, config, kDraws, 1.1), o.exact, kDraws);
  MESSAGE("crs with draw weights x1.1: max |z| ", biased_z);
  CHECK(biased_z > 4.0);
}

TEST_CASE("the z-check fails a NaN or infinite estimate and a difference without variance") {
  const std::vector<double> exact{1.0, 2.0};
  for (const double bad : {static_cast<double>(NAN), static_cast<double>(INFINITY), -static_cast<double>(INFINITY)}) {
    CAPTURE(bad);
    const Moments m = estimate_moments(exact, 10, [&](uint64_t t) {
      return std::vector<double>{t == 3 ? bad : 1.0 + (t % 2 == 0 ? 0.1 : -0.1), 2.0};
    });
    CHECK_FALSE(max_z(m, exact, 10) < 1e300);
  }
  // Element 0 is noisy and centred, element 1 is always right: z stays small.
  const Moments good = estimate_moments(exact, 10, [](uint64_t t) {
    return std::vector<double>{1.0 + (t % 2 == 0 ? 0.1 : -0.1), 2.0};
  });
  CHECK(max_z(good, exact, 10) < 1e-9);
  // A constant estimate off by 1e-6 is rejected, unless a rounding resolution covers it.
  const Moments off = estimate_moments(exact, 10, [](uint64_t) { return std::vector<double>{1.0, 2.0 + 1e-6}; });
  CHECK_FALSE(max_z(off, exact, 10) < 1e300);
  CHECK(max_z(off, exact, 10, 1e-5) < 1.0);
}

TEST_CASE("measured MSE matches the variance formula; WTA-CRS beats CRS on skewed rows") {
  constexpr int kDraws = 4000;
  const Operands o = make_operands(200, 8, 6, 1.5, 77);
  double wta_mse = 0, crs_mse = 0;
  for (const SamplingVariant variant : {SamplingVariant::wta_crs, SamplingVariant::crs}) {
    const SamplingConfig config{60, 0.05, variant};  // k = 0.3 K
    const double predicted = predicted_mse(plan_sample(o.optimal_scores, config), o.x, o.D, o.g, o.E);
    const double measured = estimate(o, o.optimal_scores, config, kDraws).mse;
    MESSAGE(variant_name(variant), ": predicted MSE ", predicted, ", measured ",
            measured, " (ratio ", measured / predicted, ")");
    CHECK(std::abs(measured / predicted - 1) < 0.15);
    (variant == SamplingVariant::wta_crs ? wta_mse : crs_mse) = measured;
  }
  CHECK(wta_mse < crs_mse);
  // Rough proxy (||x|| only): the formula still holds.
  const SamplingConfig config{60};
  const double predicted = predicted_mse(plan_sample(o.rough_scores, config), o.x, o.D, o.g, o.E);
  const double measured = estimate(o, o.rough_scores, config, kDraws).mse;
  MESSAGE("wta_crs rough proxy: predicted MSE ", predicted, ", measured ", measured);
  CHECK(std::abs(measured / predicted - 1) < 0.15);
  // topk: deterministic, its error is the dropped part.
  const SamplingConfig topk{60, 0.05, SamplingVariant::topk};
  CHECK(estimate(o, o.optimal_scores, topk, 1).mse ==
        doctest::Approx(predicted_mse(plan_sample(o.optimal_scores, topk), o.x, o.D, o.g, o.E)));
}

TEST_CASE("duplicates are merged: distinct rows, multiplicities summing to s, zero-weight padding") {
  const int64_t batch = 300, K = 50, k = 30;
  Generator generator(5);
  // Skewed scores, so rows are often drawn more than once.
  const auto spread = host_values(randn({batch, K}, DType::f64, Device::cpu(), generator));
  std::vector<float> scores;
  for (double v : spread) scores.push_back(static_cast<float>(std::exp(2.0 * v)));
  const SamplingConfig config{k};
  const RowSample sample = sample_rows(from_vector(scores, {batch, K}), config, 11, 3);
  const auto idx = sample.indices.to_vector<int32_t>();
  const auto w = sample.weights.to_vector<float>();
  int64_t padded = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const SamplingPlan plan = plan_sample(std::vector<float>(scores.begin() + b * K, scores.begin() + (b + 1) * K), config);
    const auto winners = static_cast<int64_t>(plan.winners.size());
    std::set<int32_t> seen;
    double multiplicities = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int32_t row = idx[static_cast<size_t>(b * k + j)];
      const float weight = w[static_cast<size_t>(b * k + j)];
      CHECK(weight >= 0);
      if (j < winners) {
        CHECK(row == plan.winners[static_cast<size_t>(j)]);
        CHECK(weight == 1.0f);
      }
      if (weight == 0) {
        CHECK(row == idx[static_cast<size_t>(b * k)]);
        ++padded;
        continue;
      }
      CHECK(seen.insert(row).second);
      if (j >= winners) {
        const double m = weight * plan.draws * plan.p[static_cast<size_t>(row)] / plan.rest_mass;
        CHECK(std::abs(m - std::round(m)) < 1e-3);
        multiplicities += std::round(m);
      }
    }
    CHECK(multiplicities == plan.draws);
  }
  MESSAGE("padding slots: ", padded, " of ", batch * k);
  CHECK(padded > 0);
}

TEST_CASE("sampling is reproducible per (seed, subsequence) and items draw independently") {
  const Tensor scores = random_tensor({4, 100}, 8, 0, 1);
  const SamplingConfig config{20};
  const RowSample a = sample_rows(scores, config, 1, 2), b = sample_rows(scores, config, 1, 2);
  CHECK(a.indices.to_vector<int32_t>() == b.indices.to_vector<int32_t>());
  CHECK(a.weights.to_vector<float>() == b.weights.to_vector<float>());
  CHECK(sample_rows(scores, config, 1, 3).indices.to_vector<int32_t>() != a.indices.to_vector<int32_t>());
  CHECK(sample_rows(scores, config, 2, 2).indices.to_vector<int32_t>() != a.indices.to_vector<int32_t>());
  // Identical items get different draws (the counter includes the item).
  const Tensor same = scores.raw_narrow(0, 0, 1).raw_expand({2, 100});
  const auto idx = sample_rows(same, config, 1, 2).indices.to_vector<int32_t>();
  CHECK(std::vector<int32_t>(idx.begin(), idx.begin() + 20) != std::vector<int32_t>(idx.begin() + 20, idx.end()));
}

TEST_CASE("a device counter keys the draws with its value and advances by one per call") {
  const Tensor scores = random_tensor({3, 50}, 9, 0, 1);
  const SamplingConfig config{10};
  const Tensor counter = from_vector<int64_t>({5}, {1});
  for (int64_t call = 0; call < 3; ++call) {
    CAPTURE(call);
    const RowSample expected = sample_rows(scores, config, 4, (uint64_t{7} << 32) | static_cast<uint64_t>(5 + call));
    const RowSample counted = sample_rows(scores, config, 4, uint64_t{7} << 32, counter);
    CHECK(counted.indices.to_vector<int32_t>() == expected.indices.to_vector<int32_t>());
    CHECK(counted.weights.to_vector<float>() == expected.weights.to_vector<float>());
    CHECK(counter.to_vector<int64_t>() == std::vector<int64_t>{6 + call});
  }
  CHECK_THROWS_WITH_AS(sample_rows(scores, config, 4, 0, from_vector<int32_t>({0}, {1})),
                       "sample_rows: expected the counter as one i64 on cpu, got i32 of shape [1] on cpu", TypeError);
}

TEST_CASE("row_norms, gather_rows, gather_scaled_rows match host loops") {
  for (const DType dtype : {DType::f32, DType::f64, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    const Tensor x = random_tensor({2, 5, 7}, 30, -2, 2, dtype);
    const auto v = host_values(x);
    const auto norms = row_norms(x).to_vector<float>();
    for (int64_t r = 0; r < 10; ++r) {
      double squares = 0;
      for (int64_t d = 0; d < 7; ++d) squares += v[static_cast<size_t>(r * 7 + d)] * v[static_cast<size_t>(r * 7 + d)];
      CHECK(norms[static_cast<size_t>(r)] == doctest::Approx(std::sqrt(squares)).epsilon(1e-6));
    }
    // A position scale of period 5 multiplies row r by scale[r % 5] (the f32 product).
    const std::vector<float> scale{0.5f, 1.0f, 2.0f, 4.0f, 3.0f};
    const auto scaled_norms = row_norms(x, from_vector(scale, {5})).to_vector<float>();
    for (size_t r = 0; r < 10; ++r) CHECK(scaled_norms[r] == norms[r] * scale[r % 5]);
    const Tensor indices = from_vector<int32_t>({4, 0, 4, 1, 2, 3}, {2, 3});
    const Tensor weights = from_vector<float>({0.5f, 2.0f, 0.0f, 1.0f, -3.0f, 8.0f}, {2, 3});
    const auto gathered = host_values(gather_rows(x, indices));
    const auto scaled = host_values(gather_scaled_rows(x, indices, weights));
    CHECK(gather_rows(x, indices).dtype() == dtype);
    const std::vector<int32_t> rows{4, 0, 4, 1, 2, 3};
    const std::vector<double> w{0.5, 2.0, 0.0, 1.0, -3.0, 8.0};
    for (int64_t s = 0; s < 6; ++s)
      for (int64_t d = 0; d < 7; ++d) {
        const double value = v[static_cast<size_t>(((s / 3) * 5 + rows[static_cast<size_t>(s)]) * 7 + d)];
        CHECK(gathered[static_cast<size_t>(s * 7 + d)] == value);
        CHECK(scaled[static_cast<size_t>(s * 7 + d)] ==
              doctest::Approx(w[static_cast<size_t>(s)] * value).epsilon(dtype == DType::bf16 ? 1e-2 : 1e-6));
      }
  }
  // Strided input: a transposed view is gathered like its contiguous copy.
  const Tensor base = random_tensor({2, 4, 5}, 31);
  const Tensor x = base.raw_transpose(1, 2);  // [2, 5, 4]
  const Tensor indices = from_vector<int32_t>({0, 4, 3, 3}, {2, 2});
  CHECK(gather_rows(x, indices).to_vector<float>() == gather_rows(x.raw_contiguous(), indices).to_vector<float>());
  CHECK(row_norms(x).to_vector<float>() == row_norms(x.raw_contiguous()).to_vector<float>());
}

TEST_CASE("update_row_norm_ema averages the row norms per position") {
  const Tensor g = random_tensor({2, 7, 3}, 40);  // 14 rows; P = 4: positions get 4, 4, 3, 3 rows
  const auto v = host_values(g);
  std::vector<double> norms;
  for (int64_t r = 0; r < 14; ++r) {
    double squares = 0;
    for (int64_t e = 0; e < 3; ++e) squares += v[static_cast<size_t>(r * 3 + e)] * v[static_cast<size_t>(r * 3 + e)];
    norms.push_back(std::sqrt(squares));
  }
  const Tensor ema = from_vector<float>({1, 2, 3, 4}, {4});
  update_row_norm_ema(ema, g, 0.9);
  const auto updated = ema.to_vector<float>();
  for (int64_t t = 0; t < 4; ++t) {
    double sum = 0, count = 0;
    for (int64_t r = t; r < 14; r += 4, ++count) sum += norms[static_cast<size_t>(r)];
    CHECK(updated[static_cast<size_t>(t)] == doctest::Approx(0.9 * (t + 1) + 0.1 * sum / count).epsilon(1e-6));
  }
  // Positions beyond the rows keep their value.
  const Tensor wide = ones({20});
  update_row_norm_ema(wide, g, 0.5);
  const auto w = wide.to_vector<float>();
  CHECK(w[0] == doctest::Approx(0.5 + 0.5 * norms[0]).epsilon(1e-6));
  for (int64_t t = 14; t < 20; ++t) CHECK(w[static_cast<size_t>(t)] == 1.0f);
}

TEST_CASE("sampling ops report bad arguments") {
  const Tensor scores = ones({2, 5});
  CHECK_THROWS_WITH_AS(sample_rows(scores, {5}, 0, 0),
                       "sample_rows: expected 1 <= k < K, got k = 5 with K = 5 (take the exact path when k >= K)",
                       ValueError);
  CHECK_THROWS_WITH_AS(sample_rows(scores, {0}, 0, 0),
                       "sample_rows: expected 1 <= k < K, got k = 0 with K = 5 (take the exact path when k >= K)",
                       ValueError);
  CHECK_THROWS_AS(sample_rows(scores, {2, 1.5}, 0, 0), ValueError);
  CHECK_THROWS_AS(sample_rows(ones({10}), {2}, 0, 0), ShapeError);
  CHECK_THROWS_AS(sample_rows(ones({2, 5}, DType::f64), {2}, 0, 0), TypeError);
  CHECK_THROWS_AS(sample_rows(from_vector<float>({1, -1, 1}, {1, 3}), {2}, 0, 0), ValueError);
  CHECK_THROWS_AS(sample_rows(from_vector<float>({1, NAN, 1}, {1, 3}), {2}, 0, 0), ValueError);
  CHECK_THROWS_AS(plan_sample({1, 2}, {2}), ValueError);
  CHECK(sample_rows(zeros({0, 5}), {2}, 0, 0).indices.shape() == Shape{0, 2});

  const Tensor x = ones({2, 5, 3});
  CHECK_THROWS_AS(row_norms(ones({5, 3})), ShapeError);
  CHECK_THROWS_AS(row_norms(ones({2, 5, 3}, DType::i32)), TypeError);
  CHECK_THROWS_WITH_AS(row_norms(x, ones({5}, DType::f64)), "row_norms: expected an f32 position_scale, got f64",
                       TypeError);
  CHECK_THROWS_WITH_AS(row_norms(x, ones({1, 5})),
                       "row_norms: expected position_scale of shape [P], P >= 1, got [1, 5]", ShapeError);
  CHECK_THROWS_AS(gather_rows(x, zeros({2, 2}, DType::i64)), TypeError);
  CHECK_THROWS_AS(gather_rows(x, zeros({3, 2}, DType::i32)), ShapeError);
  CHECK_THROWS_WITH_AS(gather_rows(x, from_vector<int32_t>({0, 5}, {2, 1})),
                       "gather_rows: index 5 at [1, 0] is out of range for 5 rows", IndexError);
  CHECK_THROWS_AS(gather_scaled_rows(x, zeros({2, 2}, DType::i32), zeros({2, 3})), ShapeError);
  CHECK_THROWS_AS(gather_scaled_rows(x, zeros({2, 2}, DType::i32), zeros({2, 2}, DType::f64)), TypeError);
  CHECK_THROWS_AS(update_row_norm_ema(ones({2, 2}), x, 0.9), ShapeError);
  CHECK_THROWS_AS(update_row_norm_ema(ones({4}, DType::f64), x, 0.9), TypeError);
  CHECK_THROWS_AS(update_row_norm_ema(ones({4}), x, 1.5), ValueError);
  CHECK_THROWS_AS(update_row_norm_ema(ones({8}).raw_slice(0, 0, 8, 2), x, 0.9), ValueError);
}
