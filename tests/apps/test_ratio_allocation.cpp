// Per-layer WTA-CRS ratios by predicted variance (apps/vit/ratio_allocation.h and train_vit's
// --wta-allocation variance): the variance prediction against the sampler's own plan and the
// full formula, the recording strategies against the exact weight gradients, the allocation's
// choices under the memory model, and train_vit's runs (messages, memory, bitwise resume).
#include <doctest/doctest.h>

#include <cmath>

#include "apps/vit/ratio_allocation.h"
#include "autograd/engine.h"
#include "core/rng.h"
#include "ops/loss.h"
#include "ops/matmul/sampled.h"
#include "ops/matmul/sampling.h"
#include "tests/apps/planning_fixture.h"
#include "tests/apps/train_vit_fixture.h"

using namespace tg;

namespace {

std::string error_of(const std::function<void()>& f) { return test::thrown_message(f); }

StrategyConfig wta(ProxyKind proxy) {
  StrategyConfig c;
  c.kind = StrategyKind::wta_crs;
  c.proxy = proxy;
  return c;
}

// Rows x [K, D] and g [K, E] with log-normal row scales, and the pass they make.
struct Rows {
  std::vector<double> x, g;
  vit::RecordedPass pass;
};
Rows random_rows(int64_t K, int64_t D, int64_t E, int64_t period, uint64_t seed) {
  Generator gen(seed);
  const std::vector<float> xs = randn({K, D}, DType::f32, Device::cpu(), gen).to_vector<float>();
  const std::vector<float> gs = randn({K, E}, DType::f32, Device::cpu(), gen).to_vector<float>();
  const std::vector<float> scale = randn({K, 2}, DType::f32, Device::cpu(), gen).to_vector<float>();
  Rows r;
  r.pass.period = period;
  for (int64_t j = 0; j < K; ++j) {
    const double sx = std::exp(scale[2 * j]), sg = std::exp(0.5 * scale[2 * j + 1]);
    double nx = 0, ng = 0;
    for (int64_t d = 0; d < D; ++d) r.x.push_back(sx * xs[j * D + d]), nx += r.x.back() * r.x.back();
    for (int64_t e = 0; e < E; ++e) r.g.push_back(sg * gs[j * E + e]), ng += r.g.back() * r.g.back();
    r.pass.x_norms.push_back(static_cast<float>(std::sqrt(nx)));
    r.pass.g_norms.push_back(static_cast<float>(std::sqrt(ng)));
  }
  for (int64_t e = 0; e < E; ++e)
    for (int64_t d = 0; d < D; ++d) {
      double c = 0;
      for (int64_t j = 0; j < K; ++j) c += r.g[j * E + e] * r.x[j * D + d];
      r.pass.product_squared += c * c;
    }
  return r;
}

}  // namespace

TEST_CASE("predicted_relative_mse: the sampler's plan on the position-mean proxy, and a bound of the full formula") {
  const Rows a = random_rows(200, 6, 5, 50, 1), b = random_rows(200, 6, 5, 50, 2);
  const int64_t k = sample_budget(200, 0.3, 10);
  REQUIRE(k == 60);
  // The expected value, formed here: scores ||x_j|| times the mean ||g|| of j's position.
  auto bound = [&](const vit::RecordedPass& pass, bool proxy) {
    std::vector<float> scores = pass.x_norms;
    if (proxy)
      for (size_t j = 0; j < 200; ++j) {
        double sum = 0;
        for (size_t r = j % 50; r < 200; r += 50) sum += pass.g_norms[r];
        scores[j] = static_cast<float>(scores[j] * (sum / 4));
      }
    const SamplingPlan plan = plan_sample(scores, {k, 0.05, SamplingVariant::wta_crs});
    std::vector<double> xs, gs;
    for (float v : pass.x_norms) xs.push_back(double(v) * v);
    for (float v : pass.g_norms) gs.push_back(double(v) * v);
    return predicted_mse(plan, xs, gs, 0.0);
  };
  for (const bool proxy : {true, false}) {
    CAPTURE(proxy);
    const StrategyConfig config = wta(proxy ? ProxyKind::position_ema : ProxyKind::none);
    CHECK(vit::predicted_relative_mse({a.pass}, 0.3, config) == doctest::Approx(bound(a.pass, proxy) / a.pass.product_squared).epsilon(1e-12));
    CHECK(vit::predicted_relative_mse({a.pass, b.pass}, 0.3, config) ==
          doctest::Approx((bound(a.pass, proxy) + bound(b.pass, proxy)) / (a.pass.product_squared + b.pass.product_squared)).epsilon(1e-12));
  }
  // Without the subtracted term it bounds the full formula from above, and closely for many rows.
  std::vector<float> scores = a.pass.x_norms;
  const double full = predicted_mse(plan_sample(scores, {k, 0.05, SamplingVariant::wta_crs}), a.x, 6, a.g, 5);
  const double predicted = vit::predicted_relative_mse({a.pass}, 0.3, wta(ProxyKind::none)) * a.pass.product_squared;
  CHECK(predicted >= full);
  CHECK(predicted <= 1.1 * full);
  // Less sampling, less variance; a budget that keeps every row has none.
  CHECK(vit::predicted_relative_mse({a.pass}, 0.6, wta(ProxyKind::none)) < vit::predicted_relative_mse({a.pass}, 0.3, wta(ProxyKind::none)));
  CHECK(vit::predicted_relative_mse({a.pass}, 1.0, wta(ProxyKind::none)) == 0.0);

  StrategyConfig wor = wta(ProxyKind::none);
  wor.kind = StrategyKind::wta_wor;
  CHECK(error_of([&] { vit::predicted_relative_mse({a.pass}, 0.3, wor); }) ==
        "predicted_relative_mse: expected an i.i.d. sampled strategy (wta-crs or crs), got wta-wor");
  CHECK(error_of([&] { vit::predicted_relative_mse({}, 0.3, wta(ProxyKind::none)); }) ==
        "predicted_relative_mse: no recorded backward pass");
}

TEST_CASE("RowStatsRecording: exact gradients, and ||G^T X||^2 equal to each linear's weight gradient's") {
  vit::VitConfig config = vit::preset("vit-tiny");
  config.image_size = 16;
  config.patch_size = 4;
  config.depth = 2;
  config.num_classes = 5;
  Generator gen(3);
  const Tensor images = randn({3, 3, 16, 16}, DType::f32, Device::cpu(), gen);
  const Tensor labels = from_vector(std::vector<int64_t>{0, 3, 4}, {3});
  auto gradients = [&](bool record, vit::RowStatistics* statistics) {
    vit::VisionTransformer model(config, Device::cpu(), 7);
    const auto before = model.blocks[1]->matmul_slots()[0].strategy->get();
    {
      std::optional<vit::RowStatsRecording> recording;
      if (record) recording.emplace(model);
      backward(cross_entropy(model.forward(images), labels, 0.0));
      if (record) *statistics = recording->statistics();
    }
    CHECK(model.blocks[1]->matmul_slots()[0].strategy->get() == before);  // put back
    std::map<std::string, std::vector<float>> out;
    for (const auto& [name, p] : model.named_parameters()) out[name] = p.grad().to_vector<float>();
    return out;
  };
  vit::RowStatistics statistics;
  const auto plain = gradients(false, nullptr), recorded = gradients(true, &statistics);
  CHECK(plain == recorded);
  REQUIRE(statistics.size() == 2);
  const char* const names[] = {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"};
  for (size_t b = 0; b < 2; ++b)
    for (size_t t = 0; t < 4; ++t) {
      CAPTURE(b);
      CAPTURE(t);
      REQUIRE(statistics[b][t].size() == 1);
      const vit::RecordedPass& pass = statistics[b][t][0];
      CHECK(pass.period == config.tokens());
      CHECK(pass.x_norms.size() == static_cast<size_t>(3 * config.tokens()));
      CHECK(pass.g_norms.size() == pass.x_norms.size());
      double squared = 0;
      for (float v : plain.at("blocks." + std::to_string(b) + "." + names[t] + ".weight")) squared += double(v) * v;
      CHECK(pass.product_squared == doctest::Approx(squared).epsilon(1e-5));
    }
}

namespace {

vit::MemoryPlan half_everywhere() {
  vit::BlockPlan block;
  block.ratio = {0.5, 0.5, 0.5, 0.5};
  return {std::vector<vit::BlockPlan>(3, block)};
}

// A relative MSE that grows as 1/ratio - 1, `weight` times more for block 2's fc2.
double synthetic_mse(size_t block, size_t target, double ratio, double weight) {
  return (block == 2 && target == 3 ? weight : 1.0) * (1 / ratio - 1);
}

}  // namespace

TEST_CASE("allocate_ratios: less predicted variance within the uniform plan's memory") {
  const vit::StepSetup setup = test::small_planning_setup();
  const vit::RatioAllocation a =
      vit::allocate_ratios(setup, half_everywhere(), [](size_t b, size_t t, double r) { return synthetic_mse(b, t, r, 10); });
  CHECK(a.uniform_rel_mse == doctest::Approx(13.0 * 0 + 11 * 1.0 + 10.0));  // eleven slots at 1, block 2's fc2 at 10
  CHECK(a.allocated_rel_mse < a.uniform_rel_mse);
  CHECK(a.allocated_kept_bytes <= a.uniform_kept_bytes);
  CHECK(a.allocated_peak <= a.uniform_peak);
  CHECK(a.uniform_peak == vit::predict_memory(setup, half_everywhere()).peak_bytes);
  CHECK(a.allocated_peak == vit::predict_memory(setup, a.plan).peak_bytes);
  for (size_t b = 0; b < 3; ++b) {
    CAPTURE(b);
    // proj's input is the fused attention's output, kept anyway: sampling it only adds rows.
    CHECK(a.plan.blocks[b].ratio[1] == 0.0);
    CHECK(a.plan.blocks[b].checkpoint == false);
  }
  // The noisier slot keeps more rows (0: all of them); blocks alike get ratios a grid step apart at most.
  auto kept = [](double ratio) { return ratio == 0 ? 1.0 : ratio; };
  CHECK(kept(a.plan.blocks[2].ratio[3]) > kept(a.plan.blocks[0].ratio[3]));
  for (size_t t = 0; t < 4; ++t) CHECK(std::abs(kept(a.plan.blocks[0].ratio[t]) - kept(a.plan.blocks[1].ratio[t])) <= 0.05 + 1e-12);
  // The ratios are allocation_ratios() values or exact.
  const std::vector<double> grid = vit::allocation_ratios();
  for (const vit::BlockPlan& block : a.plan.blocks)
    for (double r : block.ratio) CHECK((r == 0 || std::find(grid.begin(), grid.end(), r) != grid.end()));

  // A slot the uniform plan keeps exact stays exact; a uniform ratio off the grid is its own choice.
  vit::MemoryPlan uniform = half_everywhere();
  uniform.blocks[1].ratio = {0.33, 0, 0.33, 0.33};
  const vit::RatioAllocation b =
      vit::allocate_ratios(setup, uniform, [](size_t block, size_t t, double r) { return synthetic_mse(block, t, r, 1); });
  CHECK(b.plan.blocks[1].ratio[1] == 0.0);
  CHECK(b.allocated_rel_mse <= b.uniform_rel_mse);
  CHECK(b.allocated_peak <= b.uniform_peak);

  CHECK(error_of([&] { vit::allocate_ratios(setup, uniform, [](size_t, size_t, double) { return -1.0; }); }) ==
        "allocate_ratios: block 0 qkv at ratio 0.05: expected a finite relative MSE >= 0, got -1");
}

namespace {

std::vector<std::string> allocated_run(const std::string& allocation) {
  std::vector<std::string> args = test::with(test::tiny_run_args(), {"--backward", "wta-crs", "--ratio", "0.5",
                                                                    "--wta-allocation", allocation});
  test::set_flag(args, "--depth", "2");
  if (allocation == "variance") args = test::with(args, {"--wta-allocation-batches", "2"});
  return args;
}

std::string parse_error(const std::vector<std::string>& args) { return test::planning_parse_error(args); }

}  // namespace

TEST_CASE("train_vit --wta-allocation variance: its choice printed and recorded, within the uniform run's peak") {
  test::ScratchDir dir("train_vit_allocation");
  std::string output;
  const train::RunSummary allocated =
      test::run(test::with(allocated_run("variance"), {"--max-steps", "4", "--metrics-out", dir / "a.jsonl"}), &output);
  CHECK(output.find("wta allocation: per-layer ratios from 2 calibration batches; summed predicted relative variance ") !=
        std::string::npos);
  const nlohmann::json config = test::read_jsonl(dir / "a.jsonl").front();
  REQUIRE(config["type"] == "config");
  REQUIRE(config["wta_allocation"].size() == 2);
  for (const nlohmann::json& block : config["wta_allocation"]) CHECK(block[1] == 0.0);  // proj: exact
  const train::RunSummary uniform = test::run(test::with(allocated_run("uniform"), {"--max-steps", "4"}));
  CHECK(allocated.peak_allocated_bytes <= uniform.peak_allocated_bytes);

  CHECK(parse_error({"--backward", "wta-wor", "--wta-allocation", "variance"}) ==
        "--wta-allocation variance predicts the variance of i.i.d. draws: expected --backward wta-crs or crs, got wta-wor");
  CHECK(parse_error({"--backward", "wta-crs", "--wta-allocation", "variance", "--wta-targets", "all"}) ==
        "--wta-allocation variance allocates over the four linears with the fused attention (the memory model's "
        "scope): expected --wta-targets among qkv,proj,fc1,fc2 and --attention fused, got --wta-targets all and "
        "--attention explicit");
  CHECK(parse_error({"--backward", "wta-crs", "--wta-allocation", "variance", "--optimizer-in-backward", "--clip-grad", "0"}) ==
        "--wta-allocation variance calibrates with backward passes that must not update the weights; drop "
        "--optimizer-in-backward");
  CHECK(parse_error({"--backward", "wta-crs", "--wta-allocation-batches", "3"}) ==
        "--wta-allocation-batches has no effect without --wta-allocation variance");
  CHECK(parse_error({"--backward", "wta-crs", "--wta-allocation", "variance", "--wta-allocation-batches", "0"}) ==
        "--wta-allocation-batches must be at least 1, got 0");
  CHECK(parse_error({"--backward", "wta-crs", "--wta-allocation", "greedy"}) ==
        "--wta-allocation: unknown value 'greedy' (expected uniform, variance)");
}

TEST_CASE("train_vit --wta-allocation variance resumes bit for bit with the checkpoint's ratios") {
  test::check_bitwise_resume(allocated_run("variance"));
  // A checkpoint of a uniform run has no ratios to resume with.
  test::ScratchDir dir("train_vit_allocation_resume");
  test::run(test::with(allocated_run("uniform"), {"--max-steps", "2", "--save", dir / "ckpt"}));
  CHECK(error_of([&] { test::run(test::with(allocated_run("variance"), {"--max-steps", "4", "--resume", dir / "ckpt"})); }) ==
        "--resume " + (dir / "ckpt") +
            ": the checkpoint holds no per-layer ratios, but the run has --wta-allocation variance (it was written by "
            "a run without it)");
}
