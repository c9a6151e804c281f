// CPU kernels of the sampling family: the row sampler (WTA-CRS, CRS, top-k, WTA-WOR). Each item is planned (sort,
// probabilities, tail sums, winner rule) and drawn in the same order of double-precision
// operations as ops/cuda/sampling.cu, so both backends return identical indices and weights.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "ops/matmul/sampling_kernels.h"

namespace tg::cpu {

using sampling::chunk_begin;
using sampling::kSampleChunks;

ItemPlan plan_item(const float* scores, int64_t K, const SamplingConfig& config) {
  for (int64_t i = 0; i < K; ++i)
    TG_CHECK(std::isfinite(scores[i]) && scores[i] >= 0, ValueError,
             "sample_rows: expected non-negative finite scores, got ", scores[i], " for row ", i);
  ItemPlan plan;
  plan.rows.resize(static_cast<size_t>(K));
  std::iota(plan.rows.begin(), plan.rows.end(), 0);
  // Stable: equal scores keep ascending row order, as CUB's radix sort does.
  std::stable_sort(plan.rows.begin(), plan.rows.end(), [&](int32_t a, int32_t b) { return scores[a] > scores[b]; });
  auto sorted = [&](int64_t r) { return scores[plan.rows[static_cast<size_t>(r)]]; };

  // Σ s: chunks in ascending position order, then the chunk sums in ascending chunk order.
  double total = 0;
  for (int64_t c = 0; c < kSampleChunks; ++c) {
    double chunk = 0;
    for (int64_t r = chunk_begin(K, c); r < chunk_begin(K, c + 1); ++r) chunk += static_cast<double>(sorted(r));
    total += chunk;
  }
  const sampling::Probability prob{1.0 - config.alpha, config.alpha / static_cast<double>(K),
                                   1.0 / static_cast<double>(K), total};
  plan.p.resize(static_cast<size_t>(K));
  for (int64_t r = 0; r < K; ++r) plan.p[static_cast<size_t>(r)] = prob(sorted(r));

  // Tail sums from the small end: the carry into chunk c is the sum of the later chunks' sums
  // (each summed backwards from 0), and positions inside chunk c continue from that carry.
  std::vector<double> carry(kSampleChunks + 1, 0.0);
  for (int64_t c = kSampleChunks - 1; c >= 0; --c) {
    double chunk = 0;
    for (int64_t r = chunk_begin(K, c + 1) - 1; r >= chunk_begin(K, c); --r) chunk += plan.p[static_cast<size_t>(r)];
    carry[static_cast<size_t>(c)] = carry[static_cast<size_t>(c + 1)] + chunk;
  }
  plan.tail.resize(static_cast<size_t>(K));
  for (int64_t c = 0; c < kSampleChunks; ++c) {
    double running = carry[static_cast<size_t>(c + 1)];
    for (int64_t r = chunk_begin(K, c + 1) - 1; r >= chunk_begin(K, c); --r) {
      running += plan.p[static_cast<size_t>(r)];
      plan.tail[static_cast<size_t>(r)] = running;
    }
  }

  // The rule's first minimum over 1 <= c < k.
  int64_t best_c = 0;
  double best_ratio = INFINITY;
  for (int64_t c = 1; c < config.k; ++c) {
    const double ratio = sampling::winner_ratio(plan.tail.data(), config.k, c);
    if (ratio < best_ratio) {
      best_ratio = ratio;
      best_c = c;
    }
  }
  if (config.variant == SamplingVariant::wta_wor) {
    plan.winners = 0;
    while (plan.winners < config.k &&
           sampling::takes_all(plan.tail.data(), plan.p[static_cast<size_t>(plan.winners)], config.k, plan.winners))
      ++plan.winners;
  } else {
    plan.winners = sampling::winner_count(config.variant, plan.tail.data(), config.k, best_c, best_ratio);
  }
  return plan;
}

void sample_rows(const Tensor& indices, const Tensor& weights, const Tensor& scores, const SamplingConfig& config,
                 uint64_t seed, sampling::DrawStream stream) {
  const uint64_t subsequence = stream.subsequence();
  const int64_t batch = scores.size(0), K = scores.size(1), k = config.k;
  const float* all_scores = scores.data<float>();
  std::vector<int32_t> counts(static_cast<size_t>(K));
  for (int64_t b = 0; b < batch; ++b) {
    const ItemPlan plan = plan_item(all_scores + b * K, K, config);
    int32_t* slot_index = indices.data<int32_t>() + b * k;
    float* slot_weight = weights.data<float>() + b * k;
    int64_t slot = 0;
    for (; slot < plan.winners; ++slot) {
      slot_index[slot] = plan.rows[static_cast<size_t>(slot)];
      slot_weight[slot] = 1.0f;
    }
    const int64_t draws = k - plan.winners;
    if (draws > 0) {
      // Draws by inverse CDF over the sorted non-winners (i.i.d., or systematic points from one
      // uniform without replacement); duplicates are merged by counting.
      const double rest = plan.tail[static_cast<size_t>(plan.winners)];
      const bool systematic = config.variant == SamplingVariant::wta_wor;
      const double start = systematic ? sampling::draw_uniform(seed, subsequence, b, k, 0) : 0.0;
      std::fill(counts.begin(), counts.end(), 0);
      for (int64_t j = 0; j < draws; ++j) {
        const double target = systematic ? sampling::systematic_target(start, j, draws, rest)
                                         : sampling::draw_uniform(seed, subsequence, b, k, j) * rest;
        ++counts[static_cast<size_t>(sampling::find_draw(plan.tail.data(), plan.winners, K, target))];
      }
      for (int64_t r = plan.winners; r < K; ++r) {
        const int32_t m = counts[static_cast<size_t>(r)];
        if (m == 0) continue;
        slot_index[slot] = plan.rows[static_cast<size_t>(r)];
        slot_weight[slot] = sampling::draw_weight(m, rest, draws, plan.p[static_cast<size_t>(r)]);
        ++slot;
      }
    }
    for (; slot < k; ++slot) {
      slot_index[slot] = slot_index[0];
      slot_weight[slot] = 0.0f;
    }
  }
}

void advance_counter(const Tensor& counter) { ++*static_cast<int64_t*>(counter.raw_data()); }

}  // namespace tg::cpu
