// Kernel entry points of the sampling family (ops/cpu/sampling*.cpp, ops/cuda/sampling*.cu) and
// the arithmetic both backends share. CPU and CUDA must return identical indices and weights,
// so every double-precision sum runs in one fixed order on both: positions are split into
// kSampleChunks contiguous chunks (the CUDA kernel's threads), each chunk is summed
// sequentially, and the chunk sums are combined sequentially. No expression below has the
// a*b + c shape, so no compiler can contract it into an FMA on one side only.
#pragma once

#include <cstdint>
#include <vector>

#include "core/philox.h"
#include "core/tensor.h"
#include "ops/matmul/sampling.h"

namespace tg {

namespace sampling {

inline constexpr int kSampleChunks = 256;

// First position of part c when n positions are split into `parts` contiguous parts of equal
// length (the last ones shorter or empty).
TG_HOST_DEVICE inline int64_t part_begin(int64_t n, int64_t parts, int64_t c) {
  const int64_t length = (n + parts - 1) / parts;
  return c * length < n ? c * length : n;
}

// First position of chunk c when K positions are split into kSampleChunks chunks.
TG_HOST_DEVICE inline int64_t chunk_begin(int64_t K, int64_t c) { return part_begin(K, kSampleChunks, c); }

// p = (1 - alpha) * s / total + alpha / K, or 1/K when every score is zero.
struct Probability {
  double coef, floor, uniform, total;  // 1 - alpha, alpha / K, 1 / K, Σ s
  TG_HOST_DEVICE double operator()(float score) const {
    return total > 0 ? coef * static_cast<double>(score) / total + floor : uniform;
  }
};

// The winner rule's objective for c winners: (1 - Q_c) / (k - c), with 1 - Q_c = tail[c].
TG_HOST_DEVICE inline double winner_ratio(const double* tail, int64_t k, int64_t c) {
  return tail[c] / static_cast<double>(k - c);
}

// |C| from the rule's first minimum (best_c, best_ratio) over 1 <= c < k. If the top k rows
// hold all the mass (tail[k] == 0, possible only with alpha = 0) they are all winners (s = 0).
TG_HOST_DEVICE inline int64_t winner_count(SamplingVariant variant, const double* tail, int64_t k, int64_t best_c,
                                           double best_ratio) {
  if (variant == SamplingVariant::topk) return k;
  if (variant == SamplingVariant::crs) return 0;
  if (tail[k] == 0) return k;
  return best_ratio < 1.0 / static_cast<double>(k) ? best_c : 0;
}

// Without replacement (wta_wor, docs/WTACRS.md §2b): sorted position r is taken with certainty
// when its inclusion probability (k - r) p_(r) / tail[r] would reach 1 (within kTakeAllMargin, so
// that rounding can never put two systematic points into one row). p is sorted, so the take-all
// positions are a prefix, and the first position that fails ends it: the same result as the
// sequential rule that recomputes the constant after each take-all unit.
inline constexpr double kTakeAllMargin = 1e-9;
TG_HOST_DEVICE inline bool takes_all(const double* tail, double p, int64_t k, int64_t r) {
  return static_cast<double>(k - r) * p >= tail[r] * (1.0 - kTakeAllMargin);
}

// Systematic point j of s on the non-take-all mass `rest`, from one uniform u: (u + j) rest / s.
// The points are rest / s apart and every non-take-all row spans less than that, so the s points
// select s distinct rows, each with probability s p / rest (its inclusion probability).
TG_HOST_DEVICE inline double systematic_target(double u, int64_t j, int64_t s, double rest) {
  return (u + static_cast<double>(j)) / static_cast<double>(s) * rest;
}

// The Philox subsequence of a sampling call: `base`, plus the value `*counter` holds when the
// draws count their calls in device memory (a strategy's step counter, which a CUDA graph's
// replays then advance instead of repeating the captured value).
struct DrawStream {
  uint64_t base = 0;
  const int64_t* counter = nullptr;  // on the scores' device, or null
  TG_HOST_DEVICE uint64_t subsequence() const { return base | (counter ? static_cast<uint64_t>(*counter) : 0); }
};

// Uniform number of draw j of item b.
TG_HOST_DEVICE inline double draw_uniform(uint64_t seed, uint64_t subsequence, int64_t b, int64_t k, int64_t j) {
  const auto block = static_cast<uint64_t>(b) * static_cast<uint64_t>(k) + static_cast<uint64_t>(j);
  return static_cast<double>(philox::to_uniform(philox::generate(seed, block, subsequence).w[0]));
}

// Weight of a row drawn m of s times with probability p, rest = 1 - P_C: m (1 - P_C) / (s p).
// With m = 1 it is also the Horvitz-Thompson weight 1 / π of a systematic (wta_wor) row.
TG_HOST_DEVICE inline float draw_weight(int64_t m, double rest, int64_t s, double p) {
  return static_cast<float>(static_cast<double>(m) * rest / (static_cast<double>(s) * p));
}

// Inverse CDF over the sorted non-winners: tail[r] = Σ_{r' >= r} p_(r') (tail[K] = 0, not read).
// Returns the position r in [first, K) with tail[r] > target >= tail[r + 1], given
// tail[first] > target >= 0. Bisection keeps that bracket, so it ends on a position of nonzero p.
TG_HOST_DEVICE inline int64_t find_draw(const double* tail, int64_t first, int64_t K, double target) {
  int64_t lo = first, hi = K;
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (tail[mid] > target) lo = mid;
    else hi = mid;
  }
  return lo;
}

}  // namespace sampling

namespace cpu {
// indices i32 / weights f32 [batch, k]; scores f32 [batch, K], contiguous.
void sample_rows(const Tensor& indices, const Tensor& weights, const Tensor& scores, const SamplingConfig& config,
                 uint64_t seed, sampling::DrawStream stream);
// ++*counter (an i64 scalar), in stream order.
void advance_counter(const Tensor& counter);
void row_norms(const Tensor& out, const Tensor& x, const Tensor& position_scale);  // scale may be undefined
void gather_rows(const Tensor& out, const Tensor& x, const Tensor& indices);
void gather_scaled_rows(const Tensor& out, const Tensor& g, const Tensor& indices, const Tensor& weights);
void update_row_norm_ema(const Tensor& ema, const Tensor& g, double beta);

// One item's deterministic part, in the order sample_rows computes it.
struct ItemPlan {
  std::vector<int32_t> rows;  // rows by descending score (ties by ascending index)
  std::vector<double> p;      // p of rows[r]
  std::vector<double> tail;   // tail[r] = Σ_{r' >= r} p[r'] in the shared chunked order
  int64_t winners = 0;        // the first `winners` positions have weight 1
};
ItemPlan plan_item(const float* scores, int64_t K, const SamplingConfig& config);
}  // namespace cpu

#if TG_WITH_CUDA
namespace cuda {
void sample_rows(const Tensor& indices, const Tensor& weights, const Tensor& scores, const SamplingConfig& config,
                 uint64_t seed, sampling::DrawStream stream);
// ++*counter (an i64 scalar), in stream order.
void advance_counter(const Tensor& counter);
void row_norms(const Tensor& out, const Tensor& x, const Tensor& position_scale);  // scale may be undefined
void gather_rows(const Tensor& out, const Tensor& x, const Tensor& indices);
void gather_scaled_rows(const Tensor& out, const Tensor& g, const Tensor& indices, const Tensor& weights);
void update_row_norm_ema(const Tensor& ema, const Tensor& g, double beta);
}  // namespace cuda
#endif

}  // namespace tg
