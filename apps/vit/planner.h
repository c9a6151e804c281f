// The memory planner: per-block plans that fit a peak-memory budget with the least predicted
// step time (docs/memory-planning.md, "The planner").
//
// Every block gets one rung of a ladder of techniques, ordered by how much each keeps:
//   keep < norms < norms+gelu < [norms+gelu+wta(fc2)] < checkpoint < checkpoint+norms+gelu
//   < [checkpoint+norms+gelu+wta(fc2)]
// (bracketed rungs sample, the others are exact). Norm recomputation costs two LayerNorm passes
// and frees the two LN outputs; GELU recomputation one GEMM (fc1's) and frees fc1's output;
// checkpointing a block's whole forward and frees everything but its input. Earlier blocks get
// rungs at least as high as later ones: their activations live longest, and a checkpointed
// block's rerun happens once the later blocks' activations are gone (checkpointing the last
// block saves nothing at the start of backward). Among those assignments (all of them: for 12
// blocks and 5 exact rungs, 1820), the planner takes the one with the least relative step time
// whose predicted peak fits; only when no exact plan fits does it allow the sampling rungs
// (WTA-CRS on fc2, the one linear whose input no other node keeps once norms and GELU are
// recomputed).
#pragma once

#include <cstdint>
#include <functional>

#include "apps/vit/memory_model.h"

namespace tg::vit {

struct PlannerOptions {
  int64_t budget_bytes = 0;
  // The share of the budget held back for what the model does not see, in [0, 1): plans must
  // predict at most budget·(1 − headroom). 0 on the CPU, whose peak the model predicts within a
  // few KiB; train_vit holds back kCudaPlanningHeadroom on CUDA (library workspaces).
  double headroom = 0;
  bool allow_sampling = true;  // false: --no-sampling
  double sampling_ratio = 0.3;
  // The step time the planner minimises: relative_step_time when unset, or a calibrated model
  // (train_vit --calibrate: measured per-technique costs).
  std::function<double(const MemoryPlan&)> step_time;
};

struct PlanChoice {
  MemoryPlan plan;
  MemoryPrediction prediction;
  double relative_time = 1;  // PlannerOptions::step_time's value (relative_step_time by default)
  bool samples = false;  // the plan uses a sampling rung
};

// The cheapest plan (by relative_step_time, then by peak) whose predicted peak is at most the
// budget less its headroom. ValueError when none is, stating the smallest achievable peak (and,
// with sampling forbidden, that sampling was not allowed).
PlanChoice choose_plan(const StepSetup& setup, const PlannerOptions& options);

// On CUDA the model's prediction was up to 1.3% below the measured peak over 31 plans of ViT-S/4
// and ViT-B/16 (docs/results.md, device calls 13 and 17): cuBLAS's and cuDNN's workspaces and
// their caches, which it does not model.
constexpr double kCudaPlanningHeadroom = 0.015;

// The plan with the smallest predicted peak among the planner's candidates.
PlanChoice smallest_plan(const StepSetup& setup, const PlannerOptions& options);

// The largest batch (up to `limit`) for which choose_plan finds a plan; ValueError when not even
// batch 1 fits (stating its smallest peak).
struct MaxBatch {
  int64_t batch = 0;
  PlanChoice choice;
};
MaxBatch find_max_batch(const StepSetup& setup, const PlannerOptions& options, int64_t limit = 1 << 16);

}  // namespace tg::vit
