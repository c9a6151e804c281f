// Row sampling of WTA-CRS (docs/WTACRS.md §2-3): which rows of an operand X [batch, K, D] a
// sampled matmul node keeps in forward, with the importance weights that make
// Σ_slots w·g_idxᵀ x_idx an unbiased estimate of Gᵀ·X = Σ_i g_iᵀ x_i; the row gathers and the
// gradient-norm proxy around it; and the host-side plan and variance formula for tests and
// benchmarks. No autograd: the strategy objects in ops/matmul call these.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace tg {

enum class SamplingVariant {
  wta_crs,  // winners (weight 1) plus importance-weighted draws: unbiased
  crs,      // draws only (no winners): unbiased
  topk,     // the k largest p with weight 1, no draws: biased, for ablations
  wta_wor,  // take-all rows (weight 1) plus systematic πps without replacement: k distinct rows, unbiased
};

struct SamplingConfig {
  int64_t k;           // rows kept per item, 1 <= k < K (the caller is exact when k >= K)
  double alpha = 0.05; // mixing weight of the uniform floor: p_i >= alpha / K
  SamplingVariant variant = SamplingVariant::wta_crs;
};

struct RowSample {
  Tensor indices;  // i32 [batch, k]: the kept rows (winners first, then drawn rows)
  Tensor weights;  // f32 [batch, k]: importance weight of each slot, 0 for padding slots
};

// Samples k of the K rows of each item from scores f32 [batch, K] (non-negative, finite:
// s_i = ||x_i|| * proxy_i). Draw j of item b uses Philox block b * k + j of (seed,
// subsequence), so CPU and CUDA give identical indices and weights. A row drawn m times gets
// one slot; the freed slots are padding (weight 0, the index of slot 0). Rows are ordered by
// descending score, ties by ascending index (an order of descending p: p is monotone in s).
// On CUDA all of it runs on the device without synchronising; the score values are only
// checked on the CPU (ValueError for negative or non-finite ones).
RowSample sample_rows(const Tensor& scores, const SamplingConfig& config, uint64_t seed, uint64_t subsequence);
// The same with subsequence (subsequence_base | counter) where `counter` (an i64 [1] tensor on
// the scores' device) is read by the device when the draws run, and then advanced by one: calls
// in a captured CUDA graph draw fresh numbers at every replay. Gives the indices and weights of
// sample_rows(scores, config, seed, subsequence_base | counter's value).
RowSample sample_rows(const Tensor& scores, const SamplingConfig& config, uint64_t seed, uint64_t subsequence_base,
                      const Tensor& counter);

// ||x_i|| of every row of x [batch, K, D] (any floating dtype) as f32 [batch, K]. With a
// position_scale f32 [P], row r (row-major over batch and K) is multiplied by
// position_scale[r % P] in the same pass: the sampling scores ||x_r||·ĝ of a proxy ĝ.
Tensor row_norms(const Tensor& x, const Tensor& position_scale = Tensor());

// out[b, j, :] = x[b, indices[b, j], :]: x [batch, K, D], indices i32 [batch, k] -> [batch, k, D]
// in x's dtype. Indices are range-checked on the CPU only (IndexError).
Tensor gather_rows(const Tensor& x, const Tensor& indices);

// out[b, j, :] = weights[b, j] * g[b, indices[b, j], :] for g [batch, K, E], weights f32
// [batch, k]; computed in f32 (f64 for f64 g) and stored in g's dtype.
Tensor gather_scaled_rows(const Tensor& g, const Tensor& indices, const Tensor& weights);

// Gradient-norm proxy (WTACRS.md §3), in place on ema f32 [P]:
//   ema[t] = beta * ema[t] + (1 - beta) * mean{ ||g_r|| : r % P == t }
// over the rows r of g [batch, K, E] in row-major order. Positions no row maps to (P > batch*K)
// keep their value.
void update_row_norm_ema(const Tensor& ema, const Tensor& g, double beta);

// The deterministic part of one item's sample, computed on the host exactly as sample_rows
// does: for tests, and for benchmarks that print the predicted error.
struct SamplingPlan {
  SamplingVariant variant = SamplingVariant::wta_crs;
  std::vector<double> p;         // sampling probability of each row (row order)
  std::vector<int32_t> winners;  // rows kept with weight 1 (winners, take-all rows), by descending p
  int64_t draws = 0;             // s = k - |winners|: draws from the other rows (i.i.d., or systematic)
  double rest_mass = 0;          // 1 - P_C: the probability mass of the non-winners
  std::vector<int32_t> order;    // the non-winners by descending p: the systematic design's order
};
SamplingPlan plan_sample(const std::vector<float>& scores, const SamplingConfig& config);

// E||Ĉ - C||²_F of the estimate of C = Σ_i g_iᵀ x_i that `plan` produces, for row-major host
// rows x [K, D] and g [K, E]. With i.i.d. draws:
//   (1/s) * ((1 - P_C) * Σ_{j∉C} ||g_j||²||x_j||² / p_j - ||Σ_{j∉C} g_jᵀ x_j||²_F);
// without draws (topk, or winners holding all mass) the squared bias ||Σ_{j∉C} g_jᵀ x_j||²_F.
// wta_wor (systematic, without replacement): the Horvitz-Thompson variance
//   Σ_{i,j∉C} (π_ij - π_i π_j) <y_i, y_j> / (π_i π_j),  y_i = g_iᵀ x_i, <y_i, y_j> = (g_i·g_j)(x_i·x_j),
// with the design's exact joint inclusion probabilities π_ij (WTACRS.md §2b). O(K²(D + E)).
double predicted_mse(const SamplingPlan& plan, const std::vector<double>& x, int64_t D,
                     const std::vector<double>& g, int64_t E);
// The i.i.d. formula from its parts, for callers that form them elsewhere (on the device): the
// squared row norms ||x_j||², ||g_j||² (row order) and ||Σ_{j∉C} g_jᵀ x_j||²_F. NotImplementedError
// for wta_wor, whose variance needs every pair of rows.
double predicted_mse(const SamplingPlan& plan, const std::vector<double>& x_squared_norms,
                     const std::vector<double>& g_squared_norms, double rest_squared);

}  // namespace tg
