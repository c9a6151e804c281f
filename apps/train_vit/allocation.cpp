// train_vit's --wta-allocation variance: the calibration passes and the allocation they feed.
#include "apps/train_vit/allocation.h"

#include <algorithm>
#include <cstdio>
#include <ostream>

#include "apps/vit/ratio_allocation.h"
#include "autograd/engine.h"
#include "core/allocator.h"
#include "core/memory_stats.h"
#include "ops/loss.h"
#include "ops/precision.h"

namespace tg::train {

AllocatedRatios calibrate_allocation(const Options& o, vit::VisionTransformer& model, data::DataLoader& loader,
                                     nn::Optimizer& optimizer, const RunPlan& run, std::ostream& out) {
  const int64_t batches = std::min(o.wta_allocation_batches, loader.batches_per_epoch());
  // The passes draw from the training generators (dropout, drop path): put them back after, so
  // that training draws what a uniform run draws.
  std::vector<uint64_t> offsets;
  for (const NamedGenerator& g : training_generators()) offsets.push_back(g.generator.offset());
  vit::RowStatistics statistics;
  {
    vit::RowStatsRecording recording(model);
    for (int64_t i = 0; i < batches; ++i) {
      const data::Batch batch = loader.batch(0, i);
      std::optional<AutocastWeightCache> weights;  // as the training step (trainer.cpp step_body)
      if (const std::optional<DType>& dtype = tg::precision_policy().autocast_dtype)
        weights.emplace(model.autocast_weights(), *dtype);
      backward(cross_entropy(model.forward(batch.images), batch.labels, o.label_smoothing));
    }
    optimizer.zero_grad();
    statistics = recording.statistics();
  }
  for (size_t i = 0; i < offsets.size(); ++i) training_generators()[i].generator.set_offset(offsets[i]);
  // Training starts from the allocator state of a run without calibration: the exact passes'
  // cached blocks would otherwise be reused whole (and counted so) by smaller requests.
  empty_cache(o.resolved_device);

  const StrategyConfig sampling = strategy_config(o);
  const vit::RatioAllocation allocation =
      vit::allocate_ratios(run.setup, run.plan, [&](size_t block, size_t target, double ratio) {
        return vit::predicted_relative_mse(statistics[block][target], ratio, sampling);
      });
  char line[400];
  std::snprintf(line, sizeof line,
                "wta allocation: per-layer ratios from %lld calibration batches; summed predicted relative variance "
                "%.4g (uniform ratio %g: %.4g); kept after forward %s (uniform %s); predicted peak %s (uniform %s)\n",
                static_cast<long long>(batches), allocation.allocated_rel_mse, o.ratio, allocation.uniform_rel_mse,
                format_bytes(allocation.allocated_kept_bytes).c_str(), format_bytes(allocation.uniform_kept_bytes).c_str(),
                format_bytes(allocation.allocated_peak).c_str(), format_bytes(allocation.uniform_peak).c_str());
  out << line << vit::describe(allocation.plan);
  AllocatedRatios ratios;
  for (const vit::BlockPlan& block : allocation.plan.blocks) ratios.push_back(block.ratio);
  return ratios;
}

}  // namespace tg::train
