// train_vit's --wta-allocation variance (docs/strategies.md, "Per-layer ratios"): calibration
// passes on the first training batches, then the per-layer ratios of apps/vit/ratio_allocation.h.
#pragma once

#include <iosfwd>

#include "apps/train_vit/checkpoint.h"
#include "apps/train_vit/options.h"
#include "apps/train_vit/planning.h"
#include "data/loader.h"
#include "nn/optim.h"

namespace tg::train {

// Runs forward and backward (no update; the gradients are cleared after) on the first
// --wta-allocation-batches batches of epoch 0 with recording strategies on the four linears, puts
// the model's strategies and the training generators back as they were, and returns the ratios
// that minimise the summed predicted variance at the memory of `run`'s (uniform) plan. Prints
// the choice and its predictions to `out`. Synchronizes with the device (before training).
AllocatedRatios calibrate_allocation(const Options& options, vit::VisionTransformer& model, data::DataLoader& loader,
                                     nn::Optimizer& optimizer, const RunPlan& run, std::ostream& out);

}  // namespace tg::train
