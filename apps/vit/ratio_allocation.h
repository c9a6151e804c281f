// Per-layer WTA-CRS ratios chosen from the estimator's predicted variance (train_vit
// --wta-allocation variance, docs/strategies.md): instead of one ratio for every sampled linear,
// give each (block, linear) the ratio that minimises the summed relative variance of the weight
// gradients at the memory of the uniform plan.
//
// 1. Calibration: RowStatsRecording replaces the four linears' strategies of every block by exact
//    ones that also record, per backward pass, the row norms ||x_j|| and ||g_j|| of the
//    contraction C = Gᵀ·X and ||C||²_F (host copies after the passes: calibration runs before
//    training, never inside a step).
// 2. Prediction: predicted_relative_mse(slot, ratio) is E||Ĉ - C||² / ||C||² summed over the
//    recorded passes, with the sampler's own plan (ops/matmul/sampling.h plan_sample) on the
//    scores the strategy would use (||x_j|| times the per-position mean of ||g||, which the
//    position EMA tracks) and the i.i.d. variance formula without its subtracted term
//    ||Σ_{j∉C} g_jᵀ x_j||² — an upper bound, which needs no pass over the rows of X and G.
// 3. Allocation: allocate_ratios minimises Σ rel_mse over the slots the uniform plan samples, each
//    choosing a ratio of kAllocationRatios or exact, subject to the memory model's
//    (memory_model.h) bytes kept after forward not exceeding the uniform plan's (a Lagrangian
//    search, then the predicted peaks compared). A slot whose input is kept anyway (proj's
//    input is the fused attention's output) saves nothing by sampling and stays exact.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <vector>

#include "apps/vit/memory_model.h"
#include "apps/vit/plan.h"
#include "ops/matmul/strategy.h"

namespace tg::vit {

// What one backward pass of one slot showed (host copies).
struct RecordedPass {
  std::vector<float> x_norms, g_norms;  // ||x_j||, ||g_j|| of the K rows of the contraction
  int64_t period = 0;                   // rows hold token position j % period (0: position j)
  double product_squared = 0;           // ||Gᵀ·X||²_F
};
// Per block, per target of kPlanTargets: the passes recorded.
using RowStatistics = std::vector<std::array<std::vector<RecordedPass>, 4>>;

// While alive, every block's qkv, proj, fc1 and fc2 slot holds an exact strategy that records
// (forward and backward as exact); the destructor puts the previous strategies back.
class RowStatsRecording {
 public:
  explicit RowStatsRecording(VisionTransformer& model);
  ~RowStatsRecording();
  RowStatsRecording(const RowStatsRecording&) = delete;
  RowStatsRecording& operator=(const RowStatsRecording&) = delete;
  // The passes recorded so far, copied to the host (synchronizes with the device).
  RowStatistics statistics() const;

  class Recorder;  // the recording strategy (ratio_allocation.cpp)

 private:
  struct Slot {
    std::shared_ptr<BackwardStrategy>* strategy;
    std::shared_ptr<BackwardStrategy> previous;
    std::shared_ptr<Recorder> recorder;
    size_t block, target;
  };
  std::vector<Slot> slots_;
  size_t depth_;
};

// Σ over `passes` of the predicted E||Ĉ - C||² of `sampling` (kind wta_crs or crs, its k_min,
// alpha and proxy) at `ratio`, over Σ ||C||²; 0 when the budget keeps every row. ValueError for
// no passes or a pass whose C is zero.
double predicted_relative_mse(const std::vector<RecordedPass>& passes, double ratio, const StrategyConfig& sampling);

// The ratios a slot may get besides exact: 0.05, 0.10, ..., 0.95.
std::vector<double> allocation_ratios();

struct RatioAllocation {
  MemoryPlan plan;                  // `uniform` with the sampled slots' ratios replaced (0: exact)
  double uniform_rel_mse = 0;       // Σ over the sampled slots of the predicted relative MSE
  double allocated_rel_mse = 0;
  int64_t uniform_kept_bytes = 0;   // the memory model's bytes kept after forward, summed over blocks
  int64_t allocated_kept_bytes = 0;
  int64_t uniform_peak = 0, allocated_peak = 0;  // predicted peaks (AllocatorModel::caching)
};

// Chooses, for every slot that `uniform` samples, a ratio of allocation_ratios() or exact that
// minimises Σ rel_mse(block, target, ratio) with the kept bytes at most the uniform plan's and the
// predicted peak at most its peak. rel_mse must be non-negative; slots `uniform` keeps exact stay
// exact, and every other technique of the plan is kept.
RatioAllocation allocate_ratios(const StepSetup& setup, const MemoryPlan& uniform,
                                const std::function<double(size_t block, size_t target, double ratio)>& rel_mse);

}  // namespace tg::vit
