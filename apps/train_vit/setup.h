// What a train_vit run is built from, made from its Options: the datasets and their loader
// configurations, the ViT (with the backward strategies installed on the selected blocks and
// targets), and the optimizer with its decay groups.
#pragma once

#include <memory>

#include "apps/train_vit/options.h"
#include "apps/vit/plan.h"
#include "apps/vit/vit.h"
#include "data/loader.h"
#include "nn/optim.h"

namespace tg::train {

struct TrainData {
  data::ImageDataset train, test;
  data::LoaderConfig train_loader, test_loader;  // test: no shuffle, no augmentation, no drop_last
};

// Loads (or generates) both splits, applies the subsets and picks augmentation and
// normalization for the dataset; in a data-parallel run both loaders serve this rank's shard
// (data/shard.h). IoError naming the file for a missing or corrupt dataset.
TrainData load_data(const Options& options);

// The ViT of --model/--depth/--patch/--img for `channels` x `classes`, on the run's device,
// initialized from --seed, with the strategy of --backward on --wta-targets of --wta-blocks
// (vit::install_strategies: one object per (block, target), node id block * 6 + target index;
// patch embedding and head stay exact), --recompute-gelu and --drop-path.
// With `plan` (the planner's, for --memory-budget) the blocks get its techniques and WTA-CRS
// (--seed) on its sampled linears instead (vit::apply_plan).
std::unique_ptr<vit::VisionTransformer> build_model(const Options& options, int64_t channels, int64_t classes,
                                                    const vit::MemoryPlan* plan = nullptr);

std::unique_ptr<nn::Optimizer> make_optimizer(const Options& options, const vit::VisionTransformer& model);

}  // namespace tg::train
