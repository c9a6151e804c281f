// bench_matmul: the backward strategies on one linear layer Y = X·Wᵀ (rows x in -> out).
// Prints one JSON line per strategy: saved bytes against exact, the estimator's relative bias
// and MSE over --trials independent draws, the MSE the variance formula predicts, and on CUDA
// the median forward, backward and sampling times. X has log-normal row norms like real
// activations; the upstream gradient G too (never all zeros).
//
//   bench_matmul --device cpu --rows 4096 --in 256 --out 256 --strategy wta-crs --ratio 0.3 --trials 400
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "autograd/engine.h"
#include "ops/elementwise.h"
#include "ops/matmul/linear.h"
#include "ops/matmul/gemm.h"
#include "ops/matmul/sampled.h"
#include "ops/reduce.h"
#include "ops/shape_ops.h"
#if TG_WITH_CUDA
#include <cuda_runtime.h>
#endif

using namespace tg;

namespace {

struct Options {
  std::string device = "cpu", strategy = "all";
  int64_t rows = 4096, in = 256, out = 256, trials = 100, repeats = 20, k_min = 10;
  double ratio = 0.3, alpha = 0.05, sigma = 1.0;
  uint64_t seed = 0;
};

Tensor lognormal_rows(int64_t n, int64_t d, double sigma, Device device, Generator& g) {
  return randn({n, d}, DType::f32, device, g) * exp(randn({n, 1}, DType::f32, device, g, 0, sigma));
}

double squared_norm(const Tensor& t) { return sum(t * t).item(); }

// Waits for the device so that host clocks bracket the work (events would too; the median of
// repeats over whole forward/backward calls is what we report).
void synchronize(Device device) {
#if TG_WITH_CUDA
  if (device.is_cuda()) (void)cudaDeviceSynchronize();
#else
  (void)device;
#endif
}

template <class F>
double median_ms(Device device, int64_t repeats, F&& work) {
  std::vector<double> times;
  for (int64_t r = 0; r < repeats + 3; ++r) {  // 3 warm-ups
    synchronize(device);
    const auto start = std::chrono::steady_clock::now();
    work();
    synchronize(device);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (r >= 3) times.push_back(ms);
  }
  std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2), times.end());
  return times[times.size() / 2];
}

// E||Ĉ - C||² from the sampling plan (WTACRS.md §2) through the library's formula, with the
// large parts formed on the device: the row norms, and the winners' exact part subtracted from C.
double predicted_mse_on_device(const SamplingPlan& plan, const Tensor& x, const Tensor& g, const Tensor& exact) {
  auto squares = [](const Tensor& rows) {
    std::vector<double> out;
    for (float norm : row_norms(rows.raw_unsqueeze(0)).to_vector<float>()) out.push_back(static_cast<double>(norm) * norm);
    return out;
  };
  Tensor rest = exact;
  if (!plan.winners.empty()) {
    const Tensor idx = from_vector(plan.winners, {static_cast<int64_t>(plan.winners.size())}, x.device());
    rest = exact - gemm(index_select(g, 0, idx), true, index_select(x, 0, idx), false);
  }
  return predicted_mse(plan, squares(x), squares(g), squared_norm(rest));
}

nlohmann::ordered_json bench_strategy(const std::string& name, const Options& o, Device device, const Tensor& x,
                                      const Tensor& g, const Tensor& exact, size_t exact_saved) {
  StrategyConfig config;
  config.kind = parse_strategy(name);
  config.ratio = o.ratio;
  config.alpha = o.alpha;
  config.k_min = o.k_min;
  config.proxy = ProxyKind::none;  // the estimator itself: p ∝ ||x||
  const Tensor x3 = x.raw_unsqueeze(0), g3 = g.raw_unsqueeze(0);
  nlohmann::ordered_json line;
  line["strategy"] = name;
  line["ratio"] = o.ratio;
  line["rows"] = o.rows;
  line["in"] = o.in;
  line["out"] = o.out;
  line["device"] = device.str();
  {
    config.seed = o.seed;
    auto strategy = make_strategy(config, 0);
    line["saved_bytes"] = strategy->save(x3)->saved_bytes();
    line["exact_saved_bytes"] = exact_saved;
  }
  // Statistics over independent draws (a fresh seed per trial), accumulated on the device.
  const double exact_sq = squared_norm(exact);
  Tensor mean = zeros_like(exact), error_sq = zeros({}, DType::f32, device);
  for (int64_t t = 0; t < o.trials; ++t) {
    config.seed = o.seed + 1 + static_cast<uint64_t>(t);
    auto strategy = make_strategy(config, 0);
    const Tensor estimate = strategy->save(x3)->contract(g3).raw_squeeze(0);  // Gᵀ·X = dW [out, in]
    mean.accumulate_(estimate);
    const Tensor diff = estimate - exact;
    error_sq.accumulate_(sum(diff * diff));
  }
  mean = mean / static_cast<double>(o.trials);
  line["trials"] = o.trials;
  line["rel_bias"] = std::sqrt(squared_norm(mean - exact) / exact_sq);
  line["rel_mse"] = error_sq.item() / static_cast<double>(o.trials) / exact_sq;
  const int64_t k = sample_budget(o.rows, o.ratio, o.k_min);
  if (config.kind == StrategyKind::exact || k >= o.rows) {
    line["predicted_rel_mse"] = 0.0;
  } else {
    const SamplingPlan plan = plan_sample(row_norms(x3).to_vector<float>(), {k, o.alpha, sampling_variant(config.kind)});
    line["predicted_rel_mse"] = predicted_mse_on_device(plan, x, g, exact) / exact_sq;
  }
  if (device.is_cuda()) {
    // Timings of the full layer: forward (with the strategy's sampling and gather) and backward
    // (dX, dW through the strategy, db), and of the sampling alone.
    config.seed = o.seed;
    auto strategy = make_strategy(config, 0);
    Tensor xg = x.detach(), w = randn({o.out, o.in}, DType::f32, device) * 0.02, b = zeros({o.out}, DType::f32, device);
    xg.set_requires_grad(true);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    Tensor y;
    line["fwd_ms"] = median_ms(device, o.repeats, [&] { y = linear(xg, w, b, strategy.get()); });
    line["bwd_ms"] = median_ms(device, o.repeats, [&] {
      y = linear(xg, w, b, strategy.get());
      synchronize(device);
      backward(y, g);
    }) - line["fwd_ms"].get<double>();
    line["sampling_ms"] = median_ms(device, o.repeats, [&] { (void)strategy->save(x3); });
  }
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"bench_matmul: backward strategies of one linear layer (bias, MSE, memory, time)"};
  app.add_option("--device", o.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--rows", o.rows, "rows N of X (batch x tokens)")->check(CLI::PositiveNumber);
  app.add_option("--in", o.in, "input features")->check(CLI::PositiveNumber);
  app.add_option("--out", o.out, "output features")->check(CLI::PositiveNumber);
  std::vector<std::string> choices = strategy_names();
  choices.push_back("all");
  app.add_option("--strategy", o.strategy, join_names(strategy_names(), ", ") + " or all")->check(CLI::IsMember(choices));
  app.add_option("--ratio", o.ratio, "sampling ratio in (0, 1]");
  app.add_option("--trials", o.trials, "independent draws for bias and MSE")->check(CLI::PositiveNumber);
  app.add_option("--repeats", o.repeats, "timed repeats (CUDA)")->check(CLI::PositiveNumber);
  app.add_option("--alpha", o.alpha, "uniform share of the sampling probabilities");
  app.add_option("--k-min", o.k_min, "smallest budget");
  app.add_option("--sigma", o.sigma, "log-normal spread of the row norms");
  app.add_option("--seed", o.seed, "random seed");
  CLI11_PARSE(app, argc, argv);
  try {
    const Device device = Device::parse(o.device);
    check_device_usable(device);
    Generator generator(o.seed);
    const Tensor x = lognormal_rows(o.rows, o.in, o.sigma, device, generator);
    const Tensor g = lognormal_rows(o.rows, o.out, o.sigma, device, generator);
    const Tensor exact = gemm(g, true, x, false);  // dW [out, in]
    const size_t exact_saved = x.nbytes();
    const std::vector<std::string> names =
        o.strategy == "all" ? strategy_names() : std::vector<std::string>{o.strategy};
    for (const std::string& name : names) std::printf("%s\n", bench_strategy(name, o, device, x, g, exact, exact_saved).dump().c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_matmul: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
