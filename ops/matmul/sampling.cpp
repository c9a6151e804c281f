// Sampling family: argument checks and device dispatch of the WTA-CRS sampler and its row
// helpers, and the host-side plan and predicted error.
#include "ops/matmul/sampling.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>

#include "ops/dispatch.h"
#include "ops/matmul/sampling_kernels.h"

namespace tg {

namespace {

void check_config(const SamplingConfig& config, int64_t K, const char* op) {
  TG_CHECK(config.k >= 1 && config.k < K, ValueError, op, ": expected 1 <= k < K, got k = ", config.k, " with K = ",
           K, " (take the exact path when k >= K)");
  TG_CHECK(config.alpha >= 0 && config.alpha <= 1, ValueError, op, ": expected 0 <= alpha <= 1, got alpha = ",
           config.alpha);
}

void check_operand(const Tensor& x, const char* op, const char* name) {
  TG_CHECK(x.dim() == 3, ShapeError, op, ": expected ", name, " of shape [batch, K, D], got ", x.shape().str());
  TG_CHECK(is_floating(x.dtype()), TypeError, op, ": expected a floating ", name, ", got ", dtype_name(x.dtype()));
}

// i32 [batch, k] on x's device, for x [batch, K, D].
void check_indices(const Tensor& indices, const Tensor& x, const char* op) {
  TG_CHECK(indices.dtype() == DType::i32, TypeError, op, ": expected i32 indices, got ", dtype_name(indices.dtype()));
  TG_CHECK(indices.dim() == 2 && indices.size(0) == x.size(0), ShapeError, op,
           ": expected indices of shape [batch, k] with batch = ", x.size(0), ", got ", indices.shape().str());
  TG_CHECK(indices.device() == x.device(), TypeError, op, ": expected indices on ", x.device().str(), ", got ",
           indices.device().str());
}

}  // namespace

namespace {
RowSample sample_rows_with(const Tensor& scores, const SamplingConfig& config, uint64_t seed, sampling::DrawStream stream) {
  TG_CHECK(scores.dim() == 2, ShapeError, "sample_rows: expected scores of shape [batch, K], got ",
           scores.shape().str());
  TG_CHECK(scores.dtype() == DType::f32, TypeError, "sample_rows: expected f32 scores, got ",
           dtype_name(scores.dtype()));
  const int64_t batch = scores.size(0), K = scores.size(1);
  check_config(config, K, "sample_rows");
  // CUB's segmented sort and the i32 indices count positions in int.
  TG_CHECK(batch * K <= INT_MAX, ValueError, "sample_rows: expected batch * K <= ", INT_MAX, ", got ", batch, " * ",
           K);
  RowSample sample{empty({batch, config.k}, DType::i32, scores.device()),
                   empty({batch, config.k}, DType::f32, scores.device())};
  if (batch > 0)
    TG_DEVICE_DISPATCH(scores.device(), sample_rows, sample.indices, sample.weights, scores.raw_contiguous(), config, seed,
                       stream);
  return sample;
}
}  // namespace

RowSample sample_rows(const Tensor& scores, const SamplingConfig& config, uint64_t seed, uint64_t subsequence) {
  return sample_rows_with(scores, config, seed, sampling::DrawStream{subsequence, nullptr});
}

RowSample sample_rows(const Tensor& scores, const SamplingConfig& config, uint64_t seed, uint64_t subsequence_base,
                      const Tensor& counter) {
  TG_CHECK(counter.dtype() == DType::i64 && counter.numel() == 1 && counter.device() == scores.device(), TypeError,
           "sample_rows: expected the counter as one i64 on ", scores.device().str(), ", got ",
           dtype_name(counter.dtype()), " of shape ", counter.shape().str(), " on ", counter.device().str());
  RowSample sample =
      sample_rows_with(scores, config, seed, sampling::DrawStream{subsequence_base, static_cast<const int64_t*>(counter.raw_data())});
  TG_DEVICE_DISPATCH(counter.device(), advance_counter, counter);
  return sample;
}

Tensor row_norms(const Tensor& x, const Tensor& position_scale) {
  check_operand(x, "row_norms", "x");
  if (position_scale.defined()) {
    TG_CHECK(position_scale.dim() == 1 && position_scale.size(0) >= 1, ShapeError,
             "row_norms: expected position_scale of shape [P], P >= 1, got ", position_scale.shape().str());
    TG_CHECK(position_scale.dtype() == DType::f32, TypeError, "row_norms: expected an f32 position_scale, got ",
             dtype_name(position_scale.dtype()));
    TG_CHECK(position_scale.device() == x.device(), TypeError, "row_norms: expected position_scale on ",
             x.device().str(), ", got ", position_scale.device().str());
  }
  Tensor out = empty({x.size(0), x.size(1)}, DType::f32, x.device());
  if (out.numel() > 0)
    TG_DEVICE_DISPATCH(x.device(), row_norms, out, x.raw_contiguous(),
                       position_scale.defined() ? position_scale.raw_contiguous() : Tensor());
  return out;
}

Tensor gather_rows(const Tensor& x, const Tensor& indices) {
  check_operand(x, "gather_rows", "x");
  check_indices(indices, x, "gather_rows");
  Tensor out = empty({x.size(0), indices.size(1), x.size(2)}, x.dtype(), x.device());
  if (out.numel() > 0) TG_DEVICE_DISPATCH(x.device(), gather_rows, out, x.raw_contiguous(), indices.raw_contiguous());
  return out;
}

Tensor gather_scaled_rows(const Tensor& g, const Tensor& indices, const Tensor& weights) {
  check_operand(g, "gather_scaled_rows", "g");
  check_indices(indices, g, "gather_scaled_rows");
  TG_CHECK(weights.dtype() == DType::f32, TypeError, "gather_scaled_rows: expected f32 weights, got ",
           dtype_name(weights.dtype()));
  TG_CHECK(weights.shape() == indices.shape(), ShapeError, "gather_scaled_rows: expected weights of shape ",
           indices.shape().str(), " (as indices), got ", weights.shape().str());
  TG_CHECK(weights.device() == g.device(), TypeError, "gather_scaled_rows: expected weights on ", g.device().str(),
           ", got ", weights.device().str());
  Tensor out = empty({g.size(0), indices.size(1), g.size(2)}, g.dtype(), g.device());
  if (out.numel() > 0)
    TG_DEVICE_DISPATCH(g.device(), gather_scaled_rows, out, g.raw_contiguous(), indices.raw_contiguous(),
                       weights.raw_contiguous());
  return out;
}

void update_row_norm_ema(const Tensor& ema, const Tensor& g, double beta) {
  check_operand(g, "update_row_norm_ema", "g");
  TG_CHECK(ema.dim() == 1 && ema.size(0) >= 1, ShapeError, "update_row_norm_ema: expected ema of shape [P], P >= 1, got ",
           ema.shape().str());
  TG_CHECK(ema.dtype() == DType::f32, TypeError, "update_row_norm_ema: expected an f32 ema, got ",
           dtype_name(ema.dtype()));
  TG_CHECK(ema.is_contiguous(), ValueError, "update_row_norm_ema: expected a contiguous ema (it is updated in place)");
  TG_CHECK(ema.device() == g.device(), TypeError, "update_row_norm_ema: expected ema on ", g.device().str(), ", got ",
           ema.device().str());
  TG_CHECK(beta >= 0 && beta <= 1, ValueError, "update_row_norm_ema: expected 0 <= beta <= 1, got beta = ", beta);
  if (g.size(0) * g.size(1) > 0) TG_DEVICE_DISPATCH(g.device(), update_row_norm_ema, ema, g.raw_contiguous(), beta);
}

SamplingPlan plan_sample(const std::vector<float>& scores, const SamplingConfig& config) {
  const auto K = static_cast<int64_t>(scores.size());
  check_config(config, K, "plan_sample");
  const cpu::ItemPlan item = cpu::plan_item(scores.data(), K, config);
  SamplingPlan plan;
  plan.variant = config.variant;
  plan.p.resize(scores.size());
  for (int64_t r = 0; r < K; ++r) plan.p[static_cast<size_t>(item.rows[static_cast<size_t>(r)])] = item.p[static_cast<size_t>(r)];
  plan.winners.assign(item.rows.begin(), item.rows.begin() + item.winners);
  plan.draws = config.k - item.winners;
  plan.rest_mass = item.winners < K ? item.tail[static_cast<size_t>(item.winners)] : 0.0;
  plan.order.assign(item.rows.begin() + item.winners, item.rows.end());
  return plan;
}

namespace {

// The part of [0, 1) that the interval [a, b) (b - a <= 1) covers modulo 1, as up to two pieces.
std::vector<std::pair<double, double>> modulo_one(double a, double b) {
  const double shift = std::floor(a);
  a -= shift;
  b -= shift;
  if (b <= 1) return {{a, b}};
  return {{a, 1.0}, {0.0, b - 1.0}};
}

double overlap(const std::vector<std::pair<double, double>>& u, const std::vector<std::pair<double, double>>& v) {
  double total = 0;
  for (const auto& [a0, a1] : u)
    for (const auto& [b0, b1] : v) total += std::max(0.0, std::min(a1, b1) - std::max(a0, b0));
  return total;
}

// Horvitz-Thompson variance of the systematic design: the non-winners in `order` lie on [0, s)
// with lengths π = s p / rest, the points u + j (u uniform in [0, 1)) select them, and a pair is
// selected together for the u in both rows' intervals modulo 1.
double systematic_mse(const SamplingPlan& plan, const std::vector<double>& x, int64_t D, const std::vector<double>& g,
                      int64_t E) {
  const size_t n = plan.order.size();
  std::vector<double> pi(n);
  std::vector<std::vector<std::pair<double, double>>> cover(n);
  double start = 0;
  for (size_t q = 0; q < n; ++q) {
    pi[q] = static_cast<double>(plan.draws) * plan.p[static_cast<size_t>(plan.order[q])] / plan.rest_mass;
    cover[q] = modulo_one(start, start + pi[q]);
    start += pi[q];
  }
  auto dot = [](const std::vector<double>& v, int64_t width, int32_t i, int32_t j) {
    double sum = 0;
    for (int64_t c = 0; c < width; ++c) sum += v[static_cast<size_t>(i * width + c)] * v[static_cast<size_t>(j * width + c)];
    return sum;
  };
  double variance = 0;
  for (size_t q = 0; q < n; ++q)
    for (size_t r = 0; r < n; ++r) {
      const double joint = q == r ? pi[q] : overlap(cover[q], cover[r]);
      const int32_t i = plan.order[q], j = plan.order[r];
      const double inner = dot(g, E, i, j) * dot(x, D, i, j);
      if (inner != 0) variance += (joint - pi[q] * pi[r]) * inner / (pi[q] * pi[r]);
    }
  return variance;
}

}  // namespace

double predicted_mse(const SamplingPlan& plan, const std::vector<double>& x, int64_t D, const std::vector<double>& g,
                     int64_t E) {
  const auto K = static_cast<int64_t>(plan.p.size());
  TG_CHECK(static_cast<int64_t>(x.size()) == K * D && static_cast<int64_t>(g.size()) == K * E, ShapeError,
           "predicted_mse: expected x of ", K, " x ", D, " and g of ", K, " x ", E, " values, got ", x.size(), " and ",
           g.size());
  if (plan.variant == SamplingVariant::wta_wor) return plan.draws == 0 ? 0.0 : systematic_mse(plan, x, D, g, E);
  std::vector<bool> winner(static_cast<size_t>(K), false);
  for (int32_t row : plan.winners) winner[static_cast<size_t>(row)] = true;
  // rest = Σ_{j∉C} g_jᵀ x_j, and the squared row norms.
  std::vector<double> rest(static_cast<size_t>(E * D), 0.0), x_sq(static_cast<size_t>(K)), g_sq(static_cast<size_t>(K));
  for (int64_t j = 0; j < K; ++j) {
    double gg = 0, xx = 0;
    for (int64_t e = 0; e < E; ++e) gg += g[static_cast<size_t>(j * E + e)] * g[static_cast<size_t>(j * E + e)];
    for (int64_t d = 0; d < D; ++d) xx += x[static_cast<size_t>(j * D + d)] * x[static_cast<size_t>(j * D + d)];
    g_sq[static_cast<size_t>(j)] = gg;
    x_sq[static_cast<size_t>(j)] = xx;
    if (winner[static_cast<size_t>(j)]) continue;
    for (int64_t e = 0; e < E; ++e)
      for (int64_t d = 0; d < D; ++d)
        rest[static_cast<size_t>(e * D + d)] += g[static_cast<size_t>(j * E + e)] * x[static_cast<size_t>(j * D + d)];
  }
  double rest_squared = 0;
  for (double v : rest) rest_squared += v * v;
  return predicted_mse(plan, x_sq, g_sq, rest_squared);
}

double predicted_mse(const SamplingPlan& plan, const std::vector<double>& x_squared_norms,
                     const std::vector<double>& g_squared_norms, double rest_squared) {
  TG_CHECK(plan.variant != SamplingVariant::wta_wor, NotImplementedError,
           "predicted_mse from squared norms: the without-replacement variance needs every pair of rows; use the "
           "overload that takes the rows");
  const size_t K = plan.p.size();
  TG_CHECK(x_squared_norms.size() == K && g_squared_norms.size() == K, ShapeError, "predicted_mse: expected ", K,
           " squared row norms of x and of g, got ", x_squared_norms.size(), " and ", g_squared_norms.size());
  if (plan.draws == 0) return rest_squared;
  std::vector<bool> winner(K, false);
  for (int32_t row : plan.winners) winner[static_cast<size_t>(row)] = true;
  double weighted = 0;  // Σ_{j∉C} ||g_j||² ||x_j||² / p_j
  for (size_t j = 0; j < K; ++j) {
    const double gx = g_squared_norms[j] * x_squared_norms[j];
    if (!winner[j] && gx > 0) weighted += gx / plan.p[j];
  }
  return (plan.rest_mass * weighted - rest_squared) / static_cast<double>(plan.draws);
}

}  // namespace tg
