// train_vit's memory planning (docs/memory-planning.md): parsing --memory-budget and
// --memory-capacity, the memory model's setup for a run, the per-block plan that the technique
// flags describe, the planner's plan for a budget, and the printouts of --plan-only,
// --memory-budget and --find-max-batch.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

#include "apps/train_vit/options.h"
#include "apps/train_vit/setup.h"
#include "apps/vit/memory_model.h"

namespace tg::train {

// "3GB", "2.5GiB", "800MB", "512KiB", "1e9B" -> bytes (B, KB, MB, GB, TB are powers of 1000;
// KiB, MiB, GiB, TiB of 1024; the unit's letters in any case). ValueError naming `flag`, the
// forms and the text otherwise.
int64_t parse_byte_size(const std::string& text, const std::string& flag);

// --memory-budget: bytes with a unit (parse_byte_size), or a number in (0, 1] without a unit: that
// fraction of `capacity` (--memory-capacity, or the CUDA device's total memory). A fraction with
// no capacity (the CPU without --memory-capacity) is a ValueError saying what to give.
int64_t parse_memory_budget(const std::string& text, std::optional<int64_t> capacity);

// The device's total memory (cudaMemGetInfo) on CUDA; nullopt on the CPU, whose memory is the
// host's and shared with everything else.
std::optional<int64_t> device_memory_capacity(Device device);

// The per-block plan of --checkpoint-blocks, --recompute-norms, --recompute-gelu and a sampled
// --backward on the linears of --wta-targets in --wta-blocks (what build_model installs).
vit::MemoryPlan plan_from_flags(const Options& options);

// Bytes the loaders keep on the run's device: what the allocator holds when they are made and
// the model is not (datasets and labels, or the loaders' device copies of them: a measurement of
// the data, not of the step), plus the train loader's epoch order (i64 per image).
int64_t resident_data_bytes(const TrainData& data, Device device);

// The memory model's setup of this run (model, batch, precision, optimizer, clipping, resident
// data; with --model-ema the averaged copy of the parameters counts as resident).
vit::StepSetup step_setup(const Options& options, int64_t channels, int64_t classes, int64_t resident_bytes);

// --calibrate: the step time of uniform plans measured on the run's device (a random batch of
// the run's size, 2 warm-up and 3 timed steps each, the median), and from them the per-block cost
// of each technique, added up for any plan.
struct StepCalibration {
  double exact_ms = 0;
  double norms_ms = 0, gelu_ms = 0, checkpoint_ms = 0, sampled_fc2_ms = 0;  // per block
  double predict_ms(const vit::MemoryPlan& plan, const vit::VitConfig& config) const;
};
StepCalibration calibrate_step_time(const Options& options, const vit::StepSetup& setup, bool with_sampling,
                                    std::ostream& out);

struct RunPlan {
  vit::MemoryPlan plan;
  vit::StepSetup setup;
  vit::MemoryPrediction first_step, steady;  // the first step (creates the optimizer state), later steps
  double relative_time = 1;
  std::optional<StepCalibration> calibration;  // --calibrate
  bool chosen = false;  // by the planner (--memory-budget), not by the flags
};

// Makes `plan` the run's and predicts it: the steady and first-step peaks, the relative step time.
void set_plan(RunPlan& run, const vit::MemoryPlan& plan);

// The plan of the run: the planner's for --memory-budget (ValueError when it cannot be met,
// stating the smallest achievable peak), else the flags'. Prints it per block with the predicted
// peak and its breakdown; with --find-max-batch prints the largest batch that fits instead.
// nullopt (and nothing printed) for a run the model does not cover (the explicit attention)
// unless a planning flag asked for it (NotImplementedError then). Call it once the loaders exist
// and before the model does (resident_data_bytes).
std::optional<RunPlan> resolve_run_plan(const Options& options, const TrainData& data, std::ostream& out);

// "memory: peak allocated after step N ..." with the prediction and their ratio.
std::string format_measured_peak(const RunPlan& plan, int64_t step, int64_t measured_peak);

}  // namespace tg::train
