// The sampled strategies end to end through the linear and matmul nodes (CPU): unbiased weight
// and operand gradients, MSE against the variance formula, WTA-CRS below CRS, exactness at
// k = N, the edge cases of WTACRS.md §6, saved bytes, and real memory savings.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "autograd/engine.h"
#include "ops/elementwise.h"
#include "ops/matmul/linear.h"
#include "ops/matmul/gemm.h"
#include "ops/matmul/matmul.h"
#include "ops/matmul/sampled.h"
#include "ops/precision.h"
#include "ops/reduce.h"
#include "tests/support/estimator_stats.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::estimate_moments;
using test::host_values;
using test::lognormal_rows;
using test::max_z;
using test::random_tensor;

namespace {

StrategyConfig config(const std::string& name, double ratio, uint64_t seed, const std::string& proxy = "none") {
  StrategyConfig c;
  c.kind = parse_strategy(name);
  c.ratio = ratio;
  c.seed = seed;
  c.proxy = parse_proxy(proxy);
  return c;
}

// The policy that keeps saved operands in `saved_dtype` ("same" or "bf16").
PrecisionPolicy saving_in(const std::string& saved_dtype) {
  PrecisionPolicy policy;
  policy.saved_dtype = parse_precision_dtype(saved_dtype, "saved dtype");
  return policy;
}

// dW of y = x·Wᵀ (x [N, D] or [B, T, D]) with upstream gradient g, formed through `strategy`.
std::vector<double> weight_grad(const Tensor& x, const Tensor& g, BackwardStrategy* strategy) {
  Tensor w = random_tensor({g.size(-1), x.size(-1)}, 3);
  w.set_requires_grad(true);
  backward(linear(x, w, Tensor(), strategy), g);
  return host_values(w.grad());
}

double squared_norm(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e * e;
  return s;
}

// Peak allocated bytes of one forward + backward through `layers` layers (`layer(i, h, strategy)`
// returns the next activation) with a fresh strategy `name` per layer, above what was allocated
// before; `saved` receives the sum of the nodes' saved bytes after the forward.
int64_t peak_of_step(const std::string& name, int64_t layers, const Tensor& input, std::vector<Tensor>& weights,
                     const std::function<Tensor(int64_t, const Tensor&, BackwardStrategy*)>& layer, size_t& saved,
                     const std::string& saved_dtype = "same") {
  CachingAllocator& alloc = allocator_for(Device::cpu());
  const PrecisionGuard precision(saving_in(saved_dtype));
  const StrategyConfig c = config(name, 0.3, 9);
  std::vector<std::shared_ptr<BackwardStrategy>> strategies;
  for (int64_t i = 0; i < layers; ++i) strategies.push_back(make_strategy(c, static_cast<uint64_t>(i)));
  zero_grad(weights);
  alloc.reset_peak_stats();
  const int64_t before = alloc.stats().allocated_bytes[0].current;
  Tensor h = input;
  saved = 0;
  for (int64_t i = 0; i < layers; ++i) {
    h = layer(i, h, strategies[static_cast<size_t>(i)].get());
    saved += h.grad_fn()->saved_bytes();
  }
  backward(sum(h));
  return alloc.stats().allocated_bytes[0].peak - before;
}

// A stack of `layers` bias-free linears of width d over an input [n, d], for the memory tests.
struct LinearStack {
  Tensor input;
  std::vector<Tensor> weights;
  LinearStack(int64_t n, int64_t d, int64_t layers, uint64_t seed) : input(random_tensor({n, d}, seed)) {
    for (int64_t i = 0; i < layers; ++i) {
      Tensor w = random_tensor({d, d}, seed + 1 + static_cast<uint64_t>(i), -0.1, 0.1);
      w.set_requires_grad(true);
      weights.push_back(w);
    }
  }
  // peak_of_step through the stack with strategy `name` and the given saved dtype.
  int64_t peak(const std::string& name, size_t& saved, const std::string& saved_dtype = "same") {
    const auto layer = [this](int64_t i, const Tensor& h, BackwardStrategy* s) {
      return linear(h, weights[static_cast<size_t>(i)], Tensor(), s);
    };
    return peak_of_step(name, static_cast<int64_t>(weights.size()), input, weights, layer, saved, saved_dtype);
  }
};

}  // namespace

TEST_CASE("linear dW: WTA-CRS and CRS are unbiased, match the variance formula, and WTA-CRS beats CRS") {
  const int64_t n = 256, d = 12, e = 6;
  const Tensor x = lognormal_rows(n, d, 1.5, 11);
  const Tensor g = random_tensor({n, e}, 12);
  const auto exact = weight_grad(x, g, nullptr);
  const int trials = 1500;
  double mse[2] = {0, 0};
  int v = 0;
  for (const std::string name : {"wta-crs", "crs"}) {
    CAPTURE(name);
    const auto m = estimate_moments(exact, trials, [&](uint64_t seed) {
      auto strategy = make_strategy(config(name, 0.3, seed), 0);
      return weight_grad(x, g, strategy.get());
    });
    CHECK(max_z(m, exact, trials) < 4.0);
    // The formula, from the plan the sampler follows (scores = ||x_i||: proxy "none").
    const SamplingPlan plan = plan_sample(row_norms(x.raw_unsqueeze(0)).to_vector<float>(),
                                          {sample_budget(n, 0.3, 10), 0.05, name == "crs" ? SamplingVariant::crs : SamplingVariant::wta_crs});
    // predicted_mse takes C = Σ g_iᵀ x_i laid out [E, D] from rows x [K, D], g [K, E].
    const double predicted = predicted_mse(plan, host_values(x), d, host_values(g), e);
    CHECK(m.mse == doctest::Approx(predicted).epsilon(0.15));
    mse[v++] = m.mse / squared_norm(exact);
  }
  CHECK(mse[0] < mse[1]);
}

TEST_CASE("attention matmul: both operand gradients are unbiased under WTA-CRS, on heavy-tailed rows with winners") {
  // Log-normal row norms of A (sampled for dB) and of Bᵀ (sampled for dA), so that items have
  // winners and the winners' part and the (1 - P_C) of the draws are both exercised.
  const int64_t batch = 3, m = 40, d = 8, n = 50;
  const Tensor a = lognormal_rows(batch * m, d, 1.5, 21).raw_reshape({batch, m, d});
  const Tensor b = lognormal_rows(batch * n, d, 1.5, 22).raw_reshape({batch, n, d}).raw_transpose(1, 2).raw_contiguous();
  const Tensor g = random_tensor({batch, m, n}, 23);
  // The items really have winners on both sides (scores = row norms: proxy "none").
  int64_t items_with_winners[2] = {0, 0};
  for (int64_t i = 0; i < batch; ++i) {
    const Tensor sides[2] = {a.raw_select(0, i), b.raw_select(0, i).raw_transpose(0, 1).raw_contiguous()};
    for (int side = 0; side < 2; ++side) {
      const std::vector<float> scores = row_norms(sides[side].raw_unsqueeze(0)).to_vector<float>();
      const int64_t rows = static_cast<int64_t>(scores.size());
      items_with_winners[side] += !plan_sample(scores, {sample_budget(rows, 0.3, 10), 0.05}).winners.empty();
    }
  }
  MESSAGE("items with winners: dB side ", items_with_winners[0], ", dA side ", items_with_winners[1], " of ", batch);
  REQUIRE(items_with_winners[0] == batch);
  REQUIRE(items_with_winners[1] == batch);
  auto grads = [&](BackwardStrategy* for_grad_a, BackwardStrategy* for_grad_b) {
    Tensor aa = a.clone(), bb = b.clone();
    aa.set_requires_grad(true);
    bb.set_requires_grad(true);
    backward(matmul(aa, bb, false, false, for_grad_a, for_grad_b), g);
    auto ga = host_values(aa.grad()), gb = host_values(bb.grad());
    ga.insert(ga.end(), gb.begin(), gb.end());
    return ga;
  };
  const auto exact = grads(nullptr, nullptr);
  const int trials = 1500;
  const auto moments = estimate_moments(exact, trials, [&](uint64_t seed) {
    auto for_a = make_strategy(config("wta-crs", 0.3, seed), 0), for_b = make_strategy(config("wta-crs", 0.3, seed), 1);
    return grads(for_a.get(), for_b.get());
  });
  CHECK(max_z(moments, exact, trials) < 4.5);
}

TEST_CASE("k = N, ratio 1 and N < k_min are exact") {
  const Tensor x = lognormal_rows(64, 8, 1.0, 31), g = random_tensor({64, 4}, 32);
  const auto exact = weight_grad(x, g, nullptr);
  auto full = make_strategy(config("wta-crs", 1.0, 1), 0);
  CHECK(weight_grad(x, g, full.get()) == exact);
  const Tensor small = lognormal_rows(9, 8, 1.0, 33), gs = random_tensor({9, 4}, 34);
  auto sampled = make_strategy(config("wta-crs", 0.3, 1), 0);  // k = max(2, 10) >= 9 rows
  CHECK(weight_grad(small, gs, sampled.get()) == weight_grad(small, gs, nullptr));
  CHECK(sample_budget(100, 0.3, 10) == 30);
  CHECK(sample_budget(20, 0.3, 10) == 10);
  CHECK(sample_budget(8, 0.3, 10) == 8);
}

TEST_CASE("edge cases: zero rows contribute nothing, all-zero inputs give zero, topk is deterministic") {
  Tensor x = lognormal_rows(100, 8, 1.0, 41);
  x.raw_narrow(0, 10, 30).fill_(0);  // 30 zero rows
  const Tensor g = random_tensor({100, 4}, 42);
  const auto exact = weight_grad(x, g, nullptr);
  const int trials = 800;
  const auto m = estimate_moments(exact, trials, [&](uint64_t seed) {
    auto strategy = make_strategy(config("wta-crs", 0.3, seed), 0);
    return weight_grad(x, g, strategy.get());
  });
  CHECK(max_z(m, exact, trials) < 4.0);
  auto s = make_strategy(config("wta-crs", 0.3, 5), 0);
  const auto zero = weight_grad(zeros({100, 8}), g, s.get());
  CHECK(squared_norm(zero) == 0);
  auto t1 = make_strategy(config("topk", 0.3, 1), 0), t2 = make_strategy(config("topk", 0.3, 2), 0);
  CHECK(weight_grad(x, g, t1.get()) == weight_grad(x, g, t2.get()));
}

TEST_CASE("saved bytes are |rows|·D·sizeof(dtype) + 8·|rows|, and the proxy follows the gradient norms") {
  const Tensor x = lognormal_rows(2 * 50, 16, 1.0, 51).raw_reshape({2, 50, 16});  // [B, T, D]
  Tensor w = random_tensor({4, 16}, 52);
  w.set_requires_grad(true);
  StrategyConfig c = config("wta-crs", 0.3, 7, "position-ema");
  auto strategy = std::make_shared<SamplingStrategy>(c, 3);
  const Tensor y = linear(x, w, Tensor(), strategy.get());
  const int64_t k = sample_budget(100, 0.3, 10);
  CHECK(y.grad_fn()->saved_bytes() == static_cast<size_t>(k * 16 * 4 + 8 * k));
  CHECK(strategy->proxy().to_vector<float>() == std::vector<float>(50, 1.0f));  // per position T = 50
  const Tensor g = random_tensor({2, 50, 4}, 53);
  backward(y, g);
  // ema[t] = 0.9 * 1 + 0.1 * mean over the batch of ||g[b, t]||
  const auto gv = host_values(g);
  const auto proxy = strategy->proxy().to_vector<float>();
  for (int64_t t = 0; t < 50; t += 7) {
    double mean = 0;
    for (int64_t b = 0; b < 2; ++b) {
      double sq = 0;
      for (int64_t j = 0; j < 4; ++j) sq += gv[static_cast<size_t>((b * 50 + t) * 4 + j)] * gv[static_cast<size_t>((b * 50 + t) * 4 + j)];
      mean += std::sqrt(sq) / 2;
    }
    CHECK(proxy[static_cast<size_t>(t)] == doctest::Approx(0.9 + 0.1 * mean).epsilon(1e-5));
  }
  CHECK(y.grad_fn()->saved_bytes() == 0);  // released after backward
}

TEST_CASE("state_dict carries the step counter and the proxy: a restored strategy draws what the original draws") {
  const Tensor x = lognormal_rows(2 * 50, 16, 1.0, 54).raw_reshape({2, 50, 16});
  const Tensor g = random_tensor({2, 50, 4}, 55);
  Tensor w = random_tensor({4, 16}, 56);
  w.set_requires_grad(true);
  const StrategyConfig c = config("wta-crs", 0.3, 7, "position-ema");
  auto original = std::make_shared<SamplingStrategy>(c, 3);
  for (int step = 0; step < 2; ++step) backward(linear(x, w, Tensor(), original.get()), g);
  const std::map<std::string, Tensor> state = original->state_dict();
  CHECK(state.at("step").to_vector<int64_t>() == std::vector<int64_t>{2});
  CHECK(state.at("proxy").to_vector<float>() == original->proxy().to_vector<float>());

  auto restored = std::make_shared<SamplingStrategy>(c, 3);
  restored->load_state_dict(state);
  w.set_grad(Tensor());
  backward(linear(x, w, Tensor(), original.get()), g);
  const std::vector<float> expected = w.grad().to_vector<float>();
  w.set_grad(Tensor());
  backward(linear(x, w, Tensor(), restored.get()), g);
  CHECK(w.grad().to_vector<float>() == expected);
  CHECK(restored->proxy().to_vector<float>() == original->proxy().to_vector<float>());

  CHECK_THROWS_WITH_AS(restored->load_state_dict({}), "wta-crs load_state_dict: missing key 'step'", ValueError);
  CHECK_THROWS_WITH_AS(restored->load_state_dict({{"step", zeros({1})}}),
                       "wta-crs load_state_dict: 'step' must be one i64, got f32 of shape [1]", ValueError);
  CHECK(ExactStrategy().state_dict().empty());
}

TEST_CASE("the random stream is keyed by the node id and the step: every (node, step) pair draws its own rows") {
  // Proxy "none": every forward sees the same scores, so only the key can change the rows.
  const Tensor x = lognormal_rows(100, 12, 0.5, 57), g = random_tensor({100, 6}, 58);
  std::vector<std::vector<double>> estimates;  // estimates[3 * node + step]
  for (uint64_t node = 0; node < 3; ++node) {
    auto strategy = make_strategy(config("wta-crs", 0.3, 7), node);
    for (int step = 0; step < 3; ++step) estimates.push_back(weight_grad(x, g, strategy.get()));
  }
  for (size_t i = 0; i < estimates.size(); ++i)
    for (size_t j = i + 1; j < estimates.size(); ++j) {
      INFO("node " << i / 3 << " step " << i % 3 << " against node " << j / 3 << " step " << j % 3);
      CHECK(estimates[i] != estimates[j]);
    }
  // The same seed, node and step draw the same rows: the differences come from the key alone.
  auto again = make_strategy(config("wta-crs", 0.3, 7), 1);
  CHECK(weight_grad(x, g, again.get()) == estimates[3]);
}

TEST_CASE("the items of a batched matmul draw independently: two identical items get different rows") {
  // dB = Aᵀ·dR samples A's rows item by item; items 0 and 1 hold the same A and dR.
  const Tensor a = lognormal_rows(40, 8, 0.5, 59).raw_unsqueeze(0).raw_expand({2, 40, 8}).raw_contiguous();
  const Tensor g = random_tensor({1, 40, 30}, 60).raw_expand({2, 40, 30}).raw_contiguous();
  const Tensor b = random_tensor({2, 8, 30}, 61);
  auto item_grads = [&](BackwardStrategy* strategy) {
    Tensor bb = b.clone();
    bb.set_requires_grad(true);
    backward(matmul(a, bb, false, false, nullptr, strategy), g);
    const std::vector<double> db = host_values(bb.grad());
    const auto half = static_cast<std::ptrdiff_t>(db.size() / 2);
    return std::make_pair(std::vector<double>(db.begin(), db.begin() + half), std::vector<double>(db.begin() + half, db.end()));
  };
  const auto exact = item_grads(nullptr);
  REQUIRE(exact.first == exact.second);
  auto strategy = make_strategy(config("wta-crs", 0.3, 3), 0);
  const auto sampled = item_grads(strategy.get());
  CHECK(sampled.first != exact.first);
  CHECK(sampled.first != sampled.second);
}

TEST_CASE("the learned proxy is used: rows that carry the gradient become winners and the estimate exact") {
  // Only 5 of 50 token positions get a gradient; ||x|| alone is near uniform (no winners). Once
  // the per-position EMA has learned ||g|| (the other positions' proxy decays as 0.9^steps),
  // the 10 live rows are the winners, the draws land on rows without gradient, and dW is exact.
  const int64_t B = 2, T = 50, D = 16, E = 4;
  const Tensor x = random_tensor({B, T, D}, 91, 1, 2);
  const Tensor g = random_tensor({B, T, E}, 92);
  const std::vector<int64_t> live{3, 17, 29, 41, 48};
  for (int64_t t = 0; t < T; ++t)
    if (std::find(live.begin(), live.end(), t) == live.end()) g.raw_narrow(1, t, 1).fill_(0);
  const auto exact = weight_grad(x, g, nullptr);
  auto learned = std::make_shared<SamplingStrategy>(config("wta-crs", 0.3, 5, "position-ema"), 0);
  std::vector<double> estimate;
  for (int step = 0; step < 60; ++step) estimate = weight_grad(x, g, learned.get());
  const std::vector<float> proxy = learned->proxy().to_vector<float>();
  for (int64_t t = 0; t < T; ++t) {
    CAPTURE(t);
    const bool is_live = std::find(live.begin(), live.end(), t) != live.end();
    CHECK((is_live ? proxy[static_cast<size_t>(t)] > 0.5f : proxy[static_cast<size_t>(t)] < 0.01f));
  }
  CHECK(test::relative_error(estimate, exact) < 1e-5);
  // Without the proxy the same budget leaves the live rows to the draws: far from exact.
  auto plain = make_strategy(config("wta-crs", 0.3, 5), 0);
  CHECK(test::relative_error(weight_grad(x, g, plain.get()), exact) > 0.05);
}

TEST_CASE("memory is really saved: a stack of sampled linears lowers the peak by the saved-bytes difference") {
  // Five linears of width 256 over 1024 rows (1 MiB per activation); each sampled node is the
  // last holder of its input, so only its k rows survive the forward.
  const int64_t n = 1024, d = 256, layers = 5;
  LinearStack stack(n, d, layers, 61);
  size_t saved_exact = 0, saved_sampled = 0;
  const int64_t peak_exact = stack.peak("exact", saved_exact);
  const int64_t peak_sampled = stack.peak("wta-crs", saved_sampled);
  const int64_t k = sample_budget(n, 0.3, 10);
  CHECK(saved_sampled == static_cast<size_t>(layers * (k * d * 4 + 8 * k)));
  CHECK(saved_exact == static_cast<size_t>(layers * n * d * 4));
  // The input is held by the test in both runs, so it is no saving: the difference is the four
  // intermediate activations minus what the five sampled nodes keep, minus the one scratch
  // buffer a sampled backward needs (the weighted rows of G, [k, D_out]) at the peak.
  const int64_t expected = (layers - 1) * n * d * 4 - static_cast<int64_t>(saved_sampled) - k * d * 4;
  CHECK(std::abs((peak_exact - peak_sampled) - expected) <= 8 * 1024);
  MESSAGE("peak exact " << peak_exact << " B, peak wta-crs " << peak_sampled << " B, expected saving " << expected);
}

TEST_CASE("saved dtype bf16: half the saved bytes, the gradient of the rounded operand, less peak memory") {
  const int64_t n = 1024, d = 256, layers = 5;
  LinearStack stack(n, d, layers, 71);
  size_t saved_f32 = 0, saved_bf16 = 0, saved_sampled_bf16 = 0;
  const int64_t peak_f32 = stack.peak("exact", saved_f32);
  const int64_t peak_bf16 = stack.peak("exact", saved_bf16, "bf16");
  CHECK(saved_bf16 == static_cast<size_t>(layers * n * d * 2));
  CHECK(saved_f32 == 2 * saved_bf16);
  // Four f32 intermediates die once converted (16·n·d bytes), five bf16 copies stay (10·n·d),
  // and at the peak (the first backward node) one operand is converted back to f32 (4·n·d).
  CHECK(std::abs((peak_f32 - peak_bf16) - 2 * n * d) <= 8 * 1024);
  MESSAGE("peak f32 " << peak_f32 << " B, peak bf16 " << peak_bf16 << " B");
  (void)stack.peak("wta-crs", saved_sampled_bf16, "bf16");
  const int64_t k = sample_budget(n, 0.3, 10);
  CHECK(saved_sampled_bf16 == static_cast<size_t>(layers * (k * d * 2 + 8 * k)));

  // dW of a bf16-saved exact node is exactly Gᵀ·round_bf16(X).
  const Tensor x = random_tensor({2, 40, 24}, 73), g = random_tensor({2, 40, 8}, 74);
  Tensor w = random_tensor({8, 24}, 75);
  w.set_requires_grad(true);
  {
    const PrecisionGuard precision(saving_in("bf16"));
    backward(linear(x, w, Tensor(), make_strategy(config("exact", 1.0, 0), 0).get()), g);
  }
  const std::vector<float> from_bf16 = w.grad().to_vector<float>();
  w.set_grad(Tensor());
  backward(linear(x.to(DType::bf16).to(DType::f32), w, Tensor()), g);
  CHECK(from_bf16 == w.grad().to_vector<float>());
}

TEST_CASE("strategy configuration errors") {
  CHECK_THROWS_WITH_AS(make_strategy(config("wta-crs", 0.0, 0), 0), "backward strategy: ratio must be in (0, 1], got 0",
                       ValueError);
  CHECK_THROWS_WITH_AS(make_strategy(config("wta-crs", 1.5, 0), 0), "backward strategy: ratio must be in (0, 1], got 1.5",
                       ValueError);
  CHECK_THROWS_WITH_AS(parse_strategy("random"), "unknown backward strategy 'random': expected exact, wta-crs, crs, topk or wta-wor",
                       ValueError);
  CHECK_THROWS_WITH_AS(parse_proxy("oracle"), "backward strategy: unknown proxy 'oracle': expected position-ema or none",
                       ValueError);
  CHECK(make_strategy(config("exact", 0.5, 0), 0)->name() == "exact");
  CHECK(make_strategy(config("topk", 0.5, 0), 0)->name() == "topk");
  CHECK_THROWS_WITH_AS(parse_precision_dtype("f16", "--saved-dtype"), "--saved-dtype must be same or bf16, got 'f16'",
                       ValueError);
}

TEST_CASE("attention matmul: each operand gradient's MSE matches the variance formula summed over items") {
  // R = A·B per item; dB = Aᵀ·dR samples A's rows (scores ||a_m||), dA = dR·Bᵀ samples Bᵀ's rows.
  const int64_t batch = 3, m = 60, d = 6, n = 50;
  const Tensor a = lognormal_rows(batch * m, d, 1.2, 71).raw_reshape({batch, m, d});
  const Tensor b = lognormal_rows(batch * n, d, 1.2, 72).raw_reshape({batch, n, d}).raw_transpose(1, 2).raw_contiguous();  // [batch, d, n]
  const Tensor g = random_tensor({batch, m, n}, 73);
  // Exact gradients and the per-item predicted MSE of each side.
  const std::vector<double> exact_da = host_values(gemm(g, false, b, true)), exact_db = host_values(gemm(a, true, g, false));
  double predicted_da = 0, predicted_db = 0;
  for (int64_t i = 0; i < batch; ++i) {
    const Tensor ai = a.raw_select(0, i), bti = b.raw_select(0, i).raw_transpose(0, 1).raw_contiguous(), gi = g.raw_select(0, i);
    const Tensor gti = gi.raw_transpose(0, 1).raw_contiguous();
    const SamplingPlan plan_b = plan_sample(row_norms(ai.raw_unsqueeze(0)).to_vector<float>(), {sample_budget(m, 0.3, 10), 0.05, SamplingVariant::wta_crs});
    predicted_db += predicted_mse(plan_b, host_values(ai), d, host_values(gi), n);
    const SamplingPlan plan_a = plan_sample(row_norms(bti.raw_unsqueeze(0)).to_vector<float>(), {sample_budget(n, 0.3, 10), 0.05, SamplingVariant::wta_crs});
    predicted_da += predicted_mse(plan_a, host_values(bti), d, host_values(gti), m);
  }
  const int trials = 1500;
  double mse_da = 0, mse_db = 0;
  for (int t = 0; t < trials; ++t) {
    const auto seed = static_cast<uint64_t>(t);
    auto for_a = make_strategy(config("wta-crs", 0.3, seed), 0), for_b = make_strategy(config("wta-crs", 0.3, seed), 1);
    Tensor aa = a.clone(), bb = b.clone();
    aa.set_requires_grad(true);
    bb.set_requires_grad(true);
    backward(matmul(aa, bb, false, false, for_a.get(), for_b.get()), g);
    const auto da = host_values(aa.grad()), db = host_values(bb.grad());
    for (size_t i = 0; i < da.size(); ++i) mse_da += (da[i] - exact_da[i]) * (da[i] - exact_da[i]) / trials;
    for (size_t i = 0; i < db.size(); ++i) mse_db += (db[i] - exact_db[i]) * (db[i] - exact_db[i]) / trials;
  }
  CHECK(mse_da == doctest::Approx(predicted_da).epsilon(0.15));
  CHECK(mse_db == doctest::Approx(predicted_db).epsilon(0.15));
}

TEST_CASE("memory is really saved through attention-style matmuls: the peak drops by the saved-bytes difference") {
  // H_{i+1} = H_i · W_i per item (batched matmul): dW_i = H_iᵀ·dR samples H_i's rows, the node's
  // last hold on H_i; dH_i = dR·W_iᵀ keeps W_i (a parameter) exact.
  // Rows outnumber the width, so activations dwarf the weights and their gradients.
  const int64_t batch = 4, rows = 1024, width = 128, layers = 5;
  const Tensor input = random_tensor({batch, rows, width}, 81);
  std::vector<Tensor> weights;
  for (int64_t i = 0; i < layers; ++i) {
    Tensor w = random_tensor({batch, width, width}, 82 + static_cast<uint64_t>(i), -0.1, 0.1);
    w.set_requires_grad(true);
    weights.push_back(w);
  }
  const auto layer = [&](int64_t i, const Tensor& h, BackwardStrategy* s) {
    return matmul(h, weights[static_cast<size_t>(i)], false, false, nullptr, s);
  };
  size_t saved_exact = 0, saved_sampled = 0;
  const int64_t peak_exact = peak_of_step("exact", layers, input, weights, layer, saved_exact);
  const int64_t peak_sampled = peak_of_step("wta-crs", layers, input, weights, layer, saved_sampled);
  const int64_t k = sample_budget(rows, 0.3, 10);
  const int64_t weight_bytes = batch * width * width * 4, activation = batch * rows * width * 4;
  // Each node keeps H's rows (or H) for dW, and from the second layer on also W exact for dH
  // (its storage counts, but it is a parameter); the first layer's input needs no gradient.
  const int64_t rows_bytes = batch * (k * width * 4 + 8 * k);
  CHECK(saved_sampled == static_cast<size_t>((layers - 1) * weight_bytes + layers * rows_bytes));
  CHECK(saved_exact == static_cast<size_t>((layers - 1) * weight_bytes + layers * activation));
  // Four intermediate activations minus what the sampled nodes keep, minus the one [batch, k, width]
  // scratch buffer of a sampled backward at the peak.
  const int64_t expected = (layers - 1) * activation - layers * rows_bytes - batch * k * width * 4;
  CHECK(std::abs((peak_exact - peak_sampled) - expected) <= 16 * 1024);
  MESSAGE("peak exact " << peak_exact << " B, peak wta-crs " << peak_sampled << " B, expected saving " << expected);
}
