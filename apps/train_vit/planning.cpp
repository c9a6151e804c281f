// Memory planning for train_vit: byte-size parsing, the run's model setup and plan, printouts.
#include "apps/train_vit/planning.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <set>

#include "apps/vit/planner.h"
#include "autograd/engine.h"
#include "nn/layers.h"
#include "ops/loss.h"
#include "core/allocator.h"
#include "core/caching_allocator.h"
#include "core/memory_stats.h"
#if TG_WITH_CUDA
#include "core/cuda/device_guard.h"
#endif

namespace tg::train {

namespace {

const char* const kByteForms = "bytes with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB; e.g. 3GB, 2.5GiB, 800MB)";

// A decimal number at the start of `text` ("2.5", "1e9"); the rest in `rest`. nullopt if none.
std::optional<double> leading_number(const std::string& text, std::string& rest) {
  size_t used = 0;
  double value = 0;
  if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.')) return std::nullopt;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  rest = text.substr(used);
  return value;
}

std::optional<double> unit_bytes(std::string unit) {
  for (char& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  static const std::pair<const char*, double> units[] = {
      {"b", 1},      {"kb", 1e3},           {"mb", 1e6},           {"gb", 1e9},           {"tb", 1e12},
      {"kib", 1024}, {"mib", 1024.0 * 1024}, {"gib", 1024.0 * 1024 * 1024}, {"tib", 1024.0 * 1024 * 1024 * 1024}};
  for (const auto& [name, bytes] : units)
    if (unit == name) return bytes;
  return std::nullopt;
}

std::string bytes_text(int64_t bytes) { return format_bytes(bytes) + " (" + std::to_string(bytes) + " bytes)"; }

}  // namespace

int64_t parse_byte_size(const std::string& text, const std::string& flag) {
  std::string rest;
  const std::optional<double> number = leading_number(text, rest);
  const std::optional<double> unit = number ? unit_bytes(rest) : std::nullopt;
  TG_CHECK(number && unit, ValueError, flag, ": expected ", kByteForms, ", got '", text, "'");
  const double bytes = *number * *unit;
  TG_CHECK(std::isfinite(bytes) && bytes >= 1 && bytes < 9.2e18, ValueError, flag,
           ": expected a positive size of at least 1 byte, got '", text, "'");
  return static_cast<int64_t>(std::llround(bytes));
}

int64_t parse_memory_budget(const std::string& text, std::optional<int64_t> capacity) {
  const std::string flag = "--memory-budget";
  std::string rest;
  const std::optional<double> number = leading_number(text, rest);
  TG_CHECK(number && (rest.empty() || unit_bytes(rest)), ValueError, flag, ": expected ", kByteForms,
           " or a fraction of the device's memory in (0, 1] (e.g. 0.5), got '", text, "'");
  if (!rest.empty()) return parse_byte_size(text, flag);
  TG_CHECK(*number > 0 && *number <= 1, ValueError, flag,
           ": a number without a unit is a fraction of the device's memory and must be in (0, 1], got '", text,
           "' (for bytes give a unit, e.g. ", text, "B)");
  TG_CHECK(capacity, ValueError, flag, " ", text,
           " is a fraction of the device's memory, but the CPU has no capacity of its own: give --memory-capacity "
           "BYTES (e.g. 16GB) to take the fraction of, or the budget in bytes (e.g. 2GB)");
  return static_cast<int64_t>(std::llround(*number * static_cast<double>(*capacity)));
}

std::optional<int64_t> device_memory_capacity(Device device) {
#if TG_WITH_CUDA
  if (device.is_cuda()) {
    const DeviceGuard guard(device.index);
    size_t free = 0, total = 0;
    TG_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    return static_cast<int64_t>(total);
  }
#endif
  (void)device;
  return std::nullopt;
}

vit::MemoryPlan plan_from_flags(const Options& o) {
  vit::MemoryPlan plan;
  plan.blocks.resize(static_cast<size_t>(model_depth(o)));
  const std::set<int64_t> checkpointed = checkpointed_blocks(o);
  const std::set<nn::MatmulTarget> targets = strategy_targets(o);
  const std::set<int64_t> sampled = strategy_blocks(o);
  for (size_t b = 0; b < plan.blocks.size(); ++b) {
    vit::BlockPlan& p = plan.blocks[b];
    p.checkpoint = checkpointed.count(static_cast<int64_t>(b)) > 0;
    p.recompute_norms = o.recompute_norms;
    p.recompute_gelu = o.recompute_gelu;
    if (o.backward == "exact" || !sampled.count(static_cast<int64_t>(b))) continue;
    for (size_t t = 0; t < vit::kPlanTargets.size(); ++t)
      if (targets.count(vit::kPlanTargets[t])) p.ratio[t] = o.ratio;
  }
  return plan;
}

int64_t resident_data_bytes(const TrainData& data, Device device) {
  // What the device holds now (nothing but the datasets and the loaders' copies of them, before
  // the model exists), plus the train loader's epoch order, made with the first batch.
  return memory_stats(device).allocated_bytes[static_cast<size_t>(StatType::all)].current +
         static_cast<int64_t>(CachingAllocator::round_size(static_cast<size_t>(data.train.size()) * 8));
}

vit::StepSetup step_setup(const Options& o, int64_t channels, int64_t classes, int64_t resident_bytes) {
  vit::StepSetup s;
  s.config = vit::preset(o.model);
  s.config.image_size = o.img;
  s.config.patch_size = o.patch;
  s.config.in_channels = channels;
  s.config.num_classes = classes;
  s.config.depth = model_depth(o);
  s.config.fused_attention = o.attention == "fused";
  s.config.drop_path_rate = o.drop_path;
  s.batch = o.batch_size;
  s.autocast_bf16 = o.precision == "bf16";
  s.saved_dtype = parse_precision_dtype(o.saved_dtype, "--saved-dtype");
  s.optimizer = o.optimizer;
  s.clip_grad = o.clip_grad > 0;
  s.optimizer_in_backward = o.optimizer_in_backward;
  // How the linear ops and Trainer::step_body run mixed precision (docs/memory-planning.md): the
  // ops return f32 parameter gradients, and the step holds an AutocastWeightCache.
  s.f32_weight_gradients = true;
  s.weight_cache = true;
  s.resident_bytes = resident_bytes;
  if (o.model_ema && s.config.fused_attention)  // the averaged model: a second set of parameters
    s.resident_bytes += vit::predict_memory(s, {std::vector<vit::BlockPlan>(static_cast<size_t>(s.config.depth))},
                                            vit::AllocatorModel::rounding)
                            .bytes(vit::MemoryKind::parameters);
  return s;
}

double StepCalibration::predict_ms(const vit::MemoryPlan& plan, const vit::VitConfig& config) const {
  // A sampled linear other than fc2 costs fc2's measured overhead scaled by its GEMM's size.
  const double d = static_cast<double>(config.dim), h = d * config.mlp_ratio;
  const double size[] = {3 * d * d, d * d, d * h, h * d};
  double ms = exact_ms;
  for (const vit::BlockPlan& b : plan.blocks) {
    ms += (b.recompute_norms ? norms_ms : 0) + (b.recompute_gelu ? gelu_ms : 0) + (b.checkpoint ? checkpoint_ms : 0);
    for (size_t t = 0; t < vit::kPlanTargets.size(); ++t)
      if (b.sampled(t)) ms += sampled_fc2_ms * size[t] / size[3];
  }
  return ms;
}

namespace {

// The median of 3 timed steps (after 2 warm-up steps) of `plan`, in ms: build_model, the run's
// optimizer (in backward with --optimizer-in-backward) and clipping, a random batch; the host
// waits for each step (loss.item()).
double time_plan(const Options& o, const vit::StepSetup& setup, const vit::MemoryPlan& plan) {
  const Device device = o.resolved_device;
  auto model = build_model(o, setup.config.in_channels, setup.config.num_classes, &plan);
  const auto optimizer = make_optimizer(o, *model);
  if (o.optimizer_in_backward) optimizer->apply_in_backward();  // its per-parameter launches cost time too
  const std::vector<Tensor> params = model->parameters();
  Generator generator(o.seed + 1);
  const Tensor images =
      randn({setup.batch, setup.config.in_channels, setup.config.image_size, setup.config.image_size}, DType::f32,
            device, generator);
  const Tensor labels = zeros({setup.batch}, DType::i64, device);
  std::vector<double> times;
  for (int step = 0; step < 5; ++step) {
    const auto start = std::chrono::steady_clock::now();
    optimizer->prepare_step();
    const Tensor loss = cross_entropy(model->forward(images), labels, o.label_smoothing);
    backward(loss);
    if (!optimizer->in_backward()) {
      if (o.clip_grad > 0) nn::clip_grad_norm(params, o.clip_grad);
      optimizer->apply_step();
      optimizer->zero_grad();
    }
    (void)loss.item();
    if (step >= 2) times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[1];
}

}  // namespace

StepCalibration calibrate_step_time(const Options& o, const vit::StepSetup& setup, bool with_sampling,
                                    std::ostream& out) {
  // The run's random streams are left where they were (drop path draws from the dropout one).
  const uint64_t dropout_offset = nn::dropout_generator().offset();
  const auto uniform = [&](bool norms, bool gelu, bool checkpoint, double fc2) {
    vit::BlockPlan b;
    b.recompute_norms = norms;
    b.recompute_gelu = gelu;
    b.checkpoint = checkpoint;
    b.ratio[3] = fc2;
    return time_plan(o, setup, {std::vector<vit::BlockPlan>(static_cast<size_t>(setup.config.depth), b)});
  };
  const auto depth = static_cast<double>(setup.config.depth);
  StepCalibration c;
  c.exact_ms = uniform(false, false, false, 0);
  const double norms = uniform(true, false, false, 0), gelu = uniform(true, true, false, 0);
  // The exact techniques add work by construction: a difference below zero is timing noise.
  c.norms_ms = std::max(0.0, (norms - c.exact_ms) / depth);
  c.gelu_ms = std::max(0.0, (gelu - norms) / depth);
  c.checkpoint_ms = std::max(0.0, (uniform(false, false, true, 0) - c.exact_ms) / depth);
  if (with_sampling) c.sampled_fc2_ms = (uniform(true, true, false, o.ratio) - gelu) / depth;
  nn::dropout_generator().set_offset(dropout_offset);
  char line[320];
  std::snprintf(line, sizeof line,
                "calibration (median of 3 timed steps, batch %lld): exact %.2f ms; per block: norms %+.3f ms, gelu "
                "%+.3f ms, checkpoint %+.3f ms%s\n",
                static_cast<long long>(setup.batch), c.exact_ms, c.norms_ms, c.gelu_ms, c.checkpoint_ms,
                with_sampling ? (", wta-crs fc2 " + std::to_string(c.sampled_fc2_ms).substr(0, 6) + " ms").c_str() : "");
  out << line;
  return c;
}

void set_plan(RunPlan& run, const vit::MemoryPlan& plan) {
  run.plan = plan;
  run.steady = vit::predict_memory(run.setup, plan);
  vit::StepSetup first = run.setup;
  first.steady_state = false;
  run.first_step = vit::predict_memory(first, plan);
  run.relative_time = vit::relative_step_time(run.setup, plan);
}

std::optional<RunPlan> resolve_run_plan(const Options& o, const TrainData& data, std::ostream& out) {
  const bool asked = o.plan_only || !o.memory_budget.empty() || o.find_max_batch;
  if (o.attention != "fused") {
    TG_CHECK(!asked, NotImplementedError,
             "--plan-only, --memory-budget and --find-max-batch need --attention fused: the memory model does not "
             "cover the explicit attention (its matmul nodes and [T, T] probabilities)");
    return std::nullopt;
  }
  // f32 and TF32 on CUDA run the fused attention as gemm_attention (ops/attention_gemm.cpp: keeps
  // Q·scale, K and V, recomputes the probabilities in chunks), which the model does not cover.
  const bool gemm_attention = o.resolved_device.is_cuda() && o.precision != "bf16" && o.attention_backend != "tapegrad";
  if (gemm_attention) {
    TG_CHECK(!asked, NotImplementedError,
             "--plan-only, --memory-budget and --find-max-batch model the flash-style fused attention (Q, K, V, O "
             "and the row statistics kept); --precision ", o.precision,
             " on CUDA runs gemm_attention instead, which is not modelled: use --precision bf16, or "
             "--attention-backend tapegrad");
    return std::nullopt;
  }
  RunPlan r;
  r.setup = step_setup(o, data.train.channels(), data.train.num_classes, resident_data_bytes(data, o.resolved_device));
  vit::PlannerOptions planner;
  planner.budget_bytes = o.memory_budget_bytes;
  planner.headroom = o.resolved_device.is_cuda() ? vit::kCudaPlanningHeadroom : 0;
  planner.allow_sampling = !o.no_sampling;
  planner.sampling_ratio = o.ratio;
  if (o.calibrate) {
    r.calibration = calibrate_step_time(o, r.setup, !o.no_sampling, out);
    const vit::VitConfig config = r.setup.config;
    planner.step_time = [calibration = *r.calibration, config](const vit::MemoryPlan& plan) {
      return calibration.predict_ms(plan, config);
    };
  }
  if (o.find_max_batch) {
    const vit::MaxBatch max = vit::find_max_batch(r.setup, planner);
    out << "find-max-batch: the largest batch that fits --memory-budget " << bytes_text(o.memory_budget_bytes)
        << (o.no_sampling ? " without sampling" : "") << " is " << max.batch << "\n";
    r.setup.batch = max.batch;
    r.plan = max.choice.plan;
    r.chosen = true;
  } else if (!o.memory_budget.empty()) {
    r.plan = vit::choose_plan(r.setup, planner).plan;
    r.chosen = true;
  } else {
    r.plan = plan_from_flags(o);
  }
  set_plan(r, r.plan);
  out << "memory plan (" << (r.chosen ? "chosen for --memory-budget " + bytes_text(o.memory_budget_bytes) : "from the flags")
      << ", batch " << r.setup.batch << "):\n"
      << vit::describe(r.plan) << vit::format_prediction(r.steady) << "  (data: " << bytes_text(r.setup.resident_bytes)
      << " resident (datasets, labels, order), " << bytes_text(vit::batch_bytes(r.setup.config, r.setup.batch))
      << " the batch)\n  first step (creates the optimizer state): "
      << bytes_text(r.first_step.peak_bytes) << "\n";
  char line[160];
  std::snprintf(line, sizeof line, "predicted step time: %.3fx the exact step (relative model: FLOPs of the extra work)\n",
                r.relative_time);
  out << line;
  if (r.calibration) {
    const double ms = r.calibration->predict_ms(r.plan, r.setup.config);
    std::snprintf(line, sizeof line, "predicted step time (calibrated): %.2f ms, %.3fx the exact step's %.2f ms\n", ms,
                  ms / r.calibration->exact_ms, r.calibration->exact_ms);
    out << line;
  }
  return r;
}

std::string format_measured_peak(const RunPlan& plan, int64_t step, int64_t measured_peak) {
  const int64_t predicted = step == 1 ? plan.first_step.peak_bytes
                                      : std::max(plan.first_step.peak_bytes, plan.steady.peak_bytes);
  char line[320];
  std::snprintf(line, sizeof line, "memory: measured peak allocated after step%s %s; predicted %s: ratio %.4f\n",
                step == 1 ? " 1" : "s 1-2", bytes_text(measured_peak).c_str(), bytes_text(predicted).c_str(),
                predicted > 0 ? static_cast<double>(measured_peak) / static_cast<double>(predicted) : 0.0);
  return line;
}

}  // namespace tg::train
