// Checkpoints of train_vit: a folder with model.safetensors (the model's state dict under timm's
// names, loadable by timm) and train_state.safetensors (the optimizer's state dict plus
// __metadata__: position in training, best accuracy, generator states and the configuration).
// Together they continue a run exactly: N steps straight equal N/2 steps, save, resume, N/2
// steps, bit for bit on the CPU.
#pragma once

#include <cstdint>
#include <string>

#include "apps/train_vit/options.h"
#include "apps/vit/vit.h"
#include "nn/optim.h"

namespace tg::train {

// Where training stands. Batches are a pure function of (seed, epoch, index) (data/loader.h),
// so the position is enough to replay the data stream.
struct TrainPosition {
  int64_t epoch = 0;           // epoch of the next step
  int64_t batch = 0;           // index of the next batch in that epoch
  int64_t step = 0;            // optimizer steps taken
  double best_test_acc = -1;   // percent; negative before the first evaluation

  friend bool operator==(const TrainPosition&, const TrainPosition&) = default;
};

// Writes both files into `dir` (created if needed); each file is written under a temporary
// name and renamed, so an interrupted save leaves the previous checkpoint intact.
void save_checkpoint(const std::string& dir, const vit::VisionTransformer& model, const nn::Optimizer& optimizer,
                     const TrainPosition& position, const Options& options);

// Restores model, optimizer and the generators from `dir` and returns the position. IoError for
// a file that is not a train_vit checkpoint; ValueError when the checkpoint's configuration
// differs from `options` in anything that changes the trajectory (listing the differences).
TrainPosition load_checkpoint(const std::string& dir, vit::VisionTransformer& model, nn::Optimizer& optimizer,
                              const Options& options);

}  // namespace tg::train
