// A whole ViT with sampled backward strategies on every target of every block (CPU): the mean
// of the parameter gradients over many seeds is the exact gradient (a z-test on random
// projections of each parameter tensor, from the measured per-seed variance), and a single
// seed's gradients really are sampled (they differ from the exact ones where a target is).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "apps/vit/strategies.h"
#include "ops/matmul/sampled.h"
#include "tests/apps/vit_fixture.h"
#include "tests/support/estimator_stats.h"

using namespace tg;

namespace {

// A ViT small enough for CI that still samples everywhere: 17 tokens (16 patches + class token),
// so attention items of K = 17 rows sample k = 10, and the linears' 4·17 = 68 rows sample 34.
vit::VitConfig tiny_vit() {
  vit::VitConfig c = test::with_explicit_attention(test::small_vit_config());
  c.dim = 16;
  c.heads = 2;
  c.depth = 2;
  return c;
}

// ema_beta 0: after one backward the proxy is the last ||g|| by position, so the scores are
// close to the optimal ||x||·||g|| and the rows that carry the gradient (the class token's)
// become winners: the measured step exercises the winners and the (1 - P_C) of the draws.
StrategyConfig sampled(const std::string& name, uint64_t seed) {
  StrategyConfig c;
  c.kind = parse_strategy(name);
  c.ratio = 0.5;
  c.seed = seed;
  c.ema_beta = 0.0;
  return c;
}

// `directions` fixed random Gaussian projections of each parameter tensor's gradient, in
// parameter order: what the z-test compares (sums over many elements are close to normal).
struct Projections {
  std::vector<std::vector<double>> directions;  // one per (parameter, direction)
  std::vector<size_t> parameter;                // index of the parameter each one projects
  Projections(const test::VitRun& shapes, int per_tensor) {
    for (size_t p = 0; p < shapes.grads.size(); ++p)
      for (int j = 0; j < per_tensor; ++j) {
        const auto n = static_cast<int64_t>(shapes.grads[p].second.size());
        directions.push_back(test::host_values(test::random_tensor({n}, 1000 + 16 * p + static_cast<uint64_t>(j), -1, 1)));
        parameter.push_back(p);
      }
  }
  std::vector<double> operator()(const test::VitRun& run) const {
    std::vector<double> out;
    for (size_t i = 0; i < directions.size(); ++i) {
      const std::vector<double>& grad = run.grads[parameter[i]].second;
      double dot = 0;
      for (size_t e = 0; e < grad.size(); ++e) dot += directions[i][e] * grad[e];
      out.push_back(dot);
    }
    return out;
  }
};

// Names of the weights whose gradient a sampled linear target forms directly.
bool is_sampled_linear_weight(const std::string& name) {
  for (const char* layer : {"attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight"})
    if (name.find(layer) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("whole ViT, all six targets sampled: the mean gradient over seeds is the exact gradient, one seed's is not") {
  const vit::VitConfig config = tiny_vit();
  vit::VisionTransformer model(config, Device::cpu(), 1234);
  const test::VitBatch batch = test::vit_batch(config, Device::cpu());
  const std::set<nn::MatmulTarget> targets = vit::parse_targets("all");
  const std::set<int64_t> blocks = vit::parse_blocks("all", config.depth);
  const test::VitRun exact = test::vit_step(model, batch);
  const Projections project(exact, 4);
  const std::vector<double> exact_projections = project(exact);
  double scale = 0;  // rounding allowance: the exact projections' size times a few f32 ulps
  for (double v : exact_projections) scale = std::max(scale, std::abs(v));

  for (const std::string name : {"wta-crs", "crs", "wta-wor"}) {
    CAPTURE(name);
    // One seed, first step (proxy ≡ 1): every block target was installed, and every sampled
    // linear's weight gradient differs from the exact one (the attention targets feed qkv's and
    // earlier gradients). Later steps can be exact where few rows carry gradient: the last
    // block's proj and fc2 see a gradient on the class token only, which become winners.
    // Seven slots per block: the six targets, attn-scores with one per operand gradient.
    REQUIRE(vit::install_strategies(model, sampled(name, 0), targets, blocks) ==
            static_cast<int64_t>(config.depth * (targets.size() + 1)));
    const test::VitRun one = test::vit_step(model, batch);
    CHECK(one.loss == exact.loss);  // forward is exact
    int64_t sampled_weights = 0;
    for (size_t p = 0; p < exact.grads.size(); ++p) {
      if (!is_sampled_linear_weight(exact.grads[p].first)) continue;
      CAPTURE(exact.grads[p].first);
      CHECK(test::relative_error(one.grads[p].second, exact.grads[p].second) > 1e-3);
      ++sampled_weights;
    }
    CHECK(sampled_weights == 4 * config.depth);
    // The measured step has winners: replay its saves' plans (scores ||x||·proxy, per item).
    {
      vit::VisionTransformer recorded(config, Device::cpu(), 1234);
      const auto recorders = test::install_recorders(recorded, sampled(name, 0));
      for (int step = 0; step < 2; ++step) (void)test::vit_step(recorded, batch);
      int64_t items = 0, with_winners = 0;
      for (const auto& recorder : recorders)
        for (size_t call = recorder->calls.size() / 2; call < recorder->calls.size(); ++call) {
          const test::RecordingStrategy::SaveCall& save = recorder->calls[call];
          const int64_t K = save.operand.size(1), k = sample_budget(K, 0.5, 10);
          if (k >= K) continue;  // exact (attention's context over a head dim below k_min)
          const Tensor scores = row_norms(save.operand, save.state.at("proxy"));  // [batch, K]
          const std::vector<float> all = scores.to_vector<float>();
          for (int64_t b = 0; b < scores.size(0); ++b, ++items)
            with_winners += !plan_sample(std::vector<float>(all.begin() + b * K, all.begin() + (b + 1) * K),
                                         {k, 0.05, sampling_variant(parse_strategy(name))})
                                 .winners.empty();
        }
      MESSAGE(name, ": ", with_winners, " of ", items, " sampled items of the measured step have winners");
      CHECK(items > 0);
      CHECK((name == "crs" ? with_winners == 0 : with_winners > 0));
    }

    // Many seeds: each trial a fresh set of strategies (seed = trial) and one warm-up step, so
    // the measured step draws with a learned proxy at step 1.
    const int trials = 400;
    const test::Moments moments = test::estimate_moments(exact_projections, trials, [&](uint64_t seed) {
      vit::install_strategies(model, sampled(name, seed), targets, blocks);
      (void)test::vit_step(model, batch);
      return project(test::vit_step(model, batch));
    });
    const double z = test::max_z(moments, exact_projections, trials, 1e-6 * scale);
    MESSAGE(name, ": max |z| over ", exact_projections.size(), " projections of ", exact.grads.size(),
            " parameter gradients: ", z);
    CHECK(z < 4.5);
  }
  vit::install_strategies(model, StrategyConfig{}, targets, blocks);
}
