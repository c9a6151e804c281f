// bench_vit: tapegrad's counterpart of shared/bench/torch_vit_bench.py — Adam training steps of
// a ViT on synthetic data, timed the same way (5 warm-up steps, then the median over chunks of 5
// steps), printing one JSON line with ms per step, images/s and the allocator's peak allocated
// and reserved memory. Run both in one device call and compare ratios.
//
//   bench_vit --preset vit-small --patch 4 --img 32 --batch 64 --precision fp32 --backward wta-crs --ratio 0.3
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "apps/vit/strategies.h"
#include "autograd/engine.h"
#include "core/allocator.h"
#include "core/side_work.h"
#include "nn/optim.h"
#include "ops/attention.h"
#include "ops/loss.h"
#include "ops/matmul/gemm.h"
#include "ops/matmul/sampled.h"
#include "ops/precision.h"
#if TG_WITH_CUDA
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include "core/cuda/cuda_check.h"
#include "core/cuda/graph.h"
#endif

using namespace tg;

int main(int argc, char** argv) {
  std::string preset = "vit-small", precision = "fp32", backward_name = "exact", targets = "qkv,proj,fc1,fc2",
              blocks = "all", checkpoint_blocks = "none",
              device_name = "cuda";
  int64_t dim = 0, depth = 0, heads = 0, patch = 4, img = 32, channels = 3, classes = 10, batch = 64, warmup = 5,
          steps = 30, profile_steps = 0, side_lanes = kSideLanes, gemm_sm_margin = kAutomaticSmMargin;
  double ratio = 1.0;
  bool recompute_gelu = false, recompute_norms = false;
  std::string saved_dtype = "same", attention = "fused", attention_backend = "auto", gemm_backend = "auto",
              gemm_autotune = "off", bias_gradient = "auto", cuda_graphs = "off", sampler_stream = "side";
  CLI::App app{"bench_vit: ViT training-step time and peak memory (tapegrad side of torch_vit_bench.py)"};
  app.add_option("--preset", preset, "vit-tiny, vit-small or vit-base");
  app.add_option("--dim", dim, "override the preset's width");
  app.add_option("--depth", depth, "override the preset's depth");
  app.add_option("--heads", heads, "override the preset's heads");
  app.add_option("--patch", patch);
  app.add_option("--img", img);
  app.add_option("--channels", channels);
  app.add_option("--classes", classes);
  app.add_option("--batch", batch);
  app.add_option("--precision", precision, "fp32 | tf32 | bf16 (mixed precision)");
  auto* attention_option = app.add_option("--attention", attention, "fused | explicit (needed to sample attn-scores / attn-context)")
      ->check(CLI::IsMember({"fused", "explicit"}));
  app.add_option("--attention-backend", attention_backend, "auto | cudnn | tapegrad: kernels of the bf16 fused attention");
  app.add_option("--gemm-backend", gemm_backend, "auto | cublas | cublaslt: the cuBLAS API of plain GEMMs on CUDA")
      ->check(CLI::IsMember({"auto", "cublas", "cublaslt"}));
  app.add_option("--gemm-autotune", gemm_autotune,
                 "on: cuBLASLt's algorithm by timing its candidates once per shape (CUDA; cuDNN-benchmark-like)")
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option("--bias-gradient", bias_gradient,
                 "auto | epilogue | column-sums: how a linear's bias gradient is formed on CUDA")
      ->check(CLI::IsMember({"auto", "epilogue", "column-sums"}));
  app.add_option("--sampler-stream", sampler_stream,
                 "side | current: where sampled nodes select their rows on CUDA (side: beside the next layers' work)")
      ->check(CLI::IsMember({"side", "current"}));
  app.add_option("--side-lanes", side_lanes, "side streams for the sampler on CUDA (1 to 64)");
  app.add_option("--gemm-sm-margin", gemm_sm_margin,
                 "0-64: SMs the GEMMs leave to concurrent work on CUDA; -1 (default): one per side lane once sampling ran");
  app.add_option("--backward", backward_name)->check(CLI::IsMember(strategy_names()));
  app.add_option("--ratio", ratio);
  app.add_option("--targets", targets, "comma list of qkv,proj,fc1,fc2,attn-scores,attn-context or all (default: the linears)");
  app.add_option("--blocks", blocks, "all or e.g. 0-5,11");
  app.add_option("--checkpoint-blocks", checkpoint_blocks,
                 "none | all | e.g. 0-5,11: blocks that rerun their forward in backward (activation checkpointing)");
  app.add_flag("--recompute-norms", recompute_norms, "qkv and fc1 recompute their LayerNorm inputs in backward");
  app.add_flag("--recompute-gelu", recompute_gelu, "recompute fc1's output in backward instead of keeping it");
  app.add_option("--saved-dtype", saved_dtype, "same | bf16: dtype of what the matmul nodes keep for backward");
  app.add_option("--cuda-graphs", cuda_graphs, "on: capture the step once after the warm-up and replay it (CUDA)")
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option("--warmup", warmup);
  app.add_option("--steps", steps);
  app.add_option("--profile-steps", profile_steps,
                 "after the timed steps, run this many more between cudaProfilerStart and cudaProfilerStop "
                 "(for ncu --profile-from-start off)");
  app.add_option("--device", device_name)->check(CLI::IsMember({"cpu", "cuda"}));
  CLI11_PARSE(app, argc, argv);
  try {
    const Device device = Device::parse(device_name);
    check_device_usable(device);
    vit::VitConfig config = vit::preset(preset);
    if (dim) config.dim = dim;
    if (depth) config.depth = depth;
    if (heads) config.heads = heads;
    config.patch_size = patch;
    config.image_size = img;
    config.in_channels = channels;
    config.num_classes = classes;
    const std::set<nn::MatmulTarget> target_set = vit::parse_targets(targets);
    // As train_vit: the sampled attention matmuls pick the explicit attention unless it was given.
    if (attention_option->count() == 0 && backward_name != "exact" && vit::includes_attention(target_set))
      attention = "explicit";
    config.fused_attention = attention == "fused";
    set_cuda_attention_backend(parse_cuda_attention_backend(attention_backend));
    set_cuda_gemm_backend(parse_cuda_gemm_backend(gemm_backend));
    set_cuda_gemm_autotune(gemm_autotune == "on");
    set_cuda_bias_gradient(parse_cuda_bias_gradient(bias_gradient));
    set_cuda_sampler_side_stream(sampler_stream == "side");
    set_side_work_lanes(static_cast<int>(side_lanes));
    set_cuda_gemm_sm_margin(static_cast<int>(gemm_sm_margin));
    PrecisionPolicy policy = precision_mode(precision);
    policy.saved_dtype = parse_precision_dtype(saved_dtype, "--saved-dtype");
    PrecisionGuard precision_guard(policy);
    vit::VisionTransformer model(config, device, 0);
    StrategyConfig strategy;
    strategy.kind = parse_strategy(backward_name);
    strategy.ratio = ratio;
    const int64_t sampled = vit::install_strategies(model, strategy, target_set,
                                                    vit::parse_blocks(blocks, config.depth));
    for (const auto& block : model.blocks) {
      block->mlp->set_recompute_gelu(recompute_gelu);
      block->set_recompute_norms(recompute_norms);
    }
    if (checkpoint_blocks != "none")
      for (int64_t b : vit::parse_blocks(checkpoint_blocks, config.depth))
        model.blocks[static_cast<size_t>(b)]->set_checkpoint(true);
    nn::Adam adam(nn::decay_specs(model.named_parameters()), nn::AdamOptions{3e-4});
    std::vector<Tensor> xs, ys;
    Generator data(1);
    for (int i = 0; i < 4; ++i) {
      xs.push_back(randn({batch, channels, img, img}, DType::f32, device, data));
      ys.push_back(rand({batch}, DType::f32, device, data, 0, static_cast<double>(classes)).to(DType::i64));
    }
    // The step as CUDA graphs capture it: the update's per-step values are written first.
    auto step_body = [&](const Tensor& x, const Tensor& y) {
      {
        std::optional<AutocastWeightCache> weights;  // as train_vit's step: the bf16 copies in one pass
        if (policy.autocast_dtype) weights.emplace(model.autocast_weights(), *policy.autocast_dtype);
        tg::backward(cross_entropy(model.forward(x), y));
      }
      adam.apply_step();
      adam.zero_grad();
    };
#if TG_WITH_CUDA
    std::unique_ptr<CudaGraph> graph;
    Tensor graph_x, graph_y;
#endif
    auto step = [&](int64_t i) {
      const Tensor& x = xs[static_cast<size_t>(i % 4)];
      const Tensor& y = ys[static_cast<size_t>(i % 4)];
      adam.prepare_step();
#if TG_WITH_CUDA
      if (graph) {
        graph_x.copy_(x);
        graph_y.copy_(y);
        graph->replay();
        return;
      }
#endif
      step_body(x, y);
    };
    auto synchronize = [&] {
#if TG_WITH_CUDA
      if (device.is_cuda()) (void)cudaDeviceSynchronize();
#endif
    };
    for (int64_t i = 0; i < warmup; ++i) step(i);
    synchronize();
    // The peak counts from here: a replay allocates nothing, so under CUDA graphs the step's
    // memory is what the capture took from the graph's pool (each block as it was allocated).
    allocator_for(device).reset_peak_stats();
    if (cuda_graphs == "on") {
      TG_CHECK(device.is_cuda(), ValueError, "--cuda-graphs on needs --device cuda");
#if TG_WITH_CUDA
      graph_x = xs[0].clone();
      graph_y = ys[0].clone();
      graph = std::make_unique<CudaGraph>(device);
      graph->capture([&] { step_body(graph_x, graph_y); });
#endif
    }
    synchronize();
    const int64_t chunk = 5;
    // host_ms: how long the host takes to enqueue a step. Close to ms_per_step means the step
    // is bound by the host (launch and bookkeeping overhead), well below it by the GPU.
    std::vector<double> times, host_times;
    auto ms_since = [](std::chrono::steady_clock::time_point start) {
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    };
    for (int64_t c = 0; c < std::max<int64_t>(1, steps / chunk); ++c) {
      const auto start = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < chunk; ++i) step(i);
      host_times.push_back(ms_since(start) / chunk);
      synchronize();
      times.push_back(ms_since(start) / chunk);
    }
    auto median = [](std::vector<double>& v) {
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
      return v[v.size() / 2];
    };
    const double ms = median(times), host_ms = median(host_times);
    if (profile_steps > 0) {
      TG_CHECK(device.is_cuda(), ValueError, "--profile-steps needs --device cuda");
#if TG_WITH_CUDA
      TG_CUDA_CHECK(cudaProfilerStart());
      for (int64_t i = 0; i < profile_steps; ++i) step(i);
      synchronize();
      TG_CUDA_CHECK(cudaProfilerStop());
#endif
    }
    const MemoryStats stats = allocator_for(device).stats();
    nlohmann::ordered_json line = {{"framework", "tapegrad"}, {"preset", preset}, {"dim", config.dim},
                                   {"depth", config.depth}, {"heads", config.heads}, {"patch", patch}, {"img", img},
                                   {"batch", batch}, {"precision", precision}, {"attention", attention},
                                   {"attention_backend", attention_backend}, {"gemm_backend", gemm_backend},
                                   {"gemm_autotune", gemm_autotune}, {"bias_gradient", bias_gradient},
                                   {"cuda_graphs", cuda_graphs}, {"sampler_stream", sampler_stream}, {"side_lanes", side_lanes}, {"gemm_sm_margin", gemm_sm_margin},
                                   {"backward", backward_name},
                                   {"ratio", ratio}, {"recompute_gelu", recompute_gelu}, {"checkpoint_blocks", checkpoint_blocks},
                                   {"recompute_norms", recompute_norms}, {"saved_dtype", saved_dtype},
                                   {"sampled_nodes", sampled}, {"ms_per_step", ms},
                                   {"host_ms", host_ms},
                                   {"img_per_s", static_cast<double>(batch) / ms * 1e3},
                                   {"peak_alloc_GB", static_cast<double>(stats.allocated_bytes[0].peak) / 1e9},
                                   {"peak_reserved_GB", static_cast<double>(stats.reserved_bytes[0].peak) / 1e9}};
    std::printf("%s\n", line.dump().c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_vit: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
