// Checkpoints of train_vit. `--save DIR` keeps one complete checkpoint as a version folder
// DIR/step-<step>-<run id>/ holding model.safetensors (the model's state dict under timm's
// names, loadable by timm) and train_state.safetensors (the optimizer's state dict plus
// __metadata__: position in training, best accuracy, generator states and the configuration),
// and a pointer file DIR/latest that names that folder. With --model-ema the averaged weights
// are in train_state.safetensors too, under timm's names prefixed by "model_ema.".
//
// Note [checkpoint publication]: a save writes both files into DIR/.tmp-<id>/, fsyncs them and
// the folder, renames the folder to DIR/<id>, fsyncs DIR, then replaces DIR/latest by writing
// DIR/.latest.tmp-<id>, fsyncing it and renaming it over DIR/latest (fsync DIR again). The one
// rename of `latest` publishes the checkpoint: a save killed at any point leaves `latest`
// naming the previous complete checkpoint (or no checkpoint at all), never a mix. Older version
// folders and leftovers of interrupted saves are removed afterwards. Both files carry the same
// `checkpoint_id` metadata, and loading refuses a pair whose ids differ (a torn or hand-mixed
// copy), naming both files. N steps straight equal N/2 steps, save, resume, N/2 steps, bit for
// bit on the CPU.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include "apps/train_vit/options.h"
#include "apps/vit/vit.h"
#include "core/rng.h"
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

// The two files of the checkpoint that `dir` holds: the version folder DIR/latest names, or
// `dir` itself when it is a version folder (holds both files). IoError when there is none.
struct CheckpointFiles {
  std::string model, train_state;
};
CheckpointFiles checkpoint_files(const std::string& dir);

// A random id for the checkpoints of one run (16 hex digits).
std::string new_run_id();

// Creates `dir` if needed and checks that files can be written into it: ValueError naming
// --save and the reason (exists as a file, read-only, ...), for validation before any work.
void check_save_dir(const std::string& dir);

// The generators a training step draws from (dropout masks and drop path, and ops given no
// generator), by the names checkpoints store their states under.
struct NamedGenerator {
  const char* name;
  Generator& generator;
};
std::vector<NamedGenerator> training_generators();

// Per block, the ratios of qkv, proj, fc1 and fc2 (0: exact) that --wta-allocation variance chose.
using AllocatedRatios = std::vector<std::array<double, 4>>;

// Publishes a checkpoint of (model, optimizer, position) in `dir` (Note [checkpoint publication]).
// `ema`: the --model-ema weights, or null. `rank_strategies`: in a data-parallel run, every
// rank's vit::strategy_state in rank order (rank 0 writes; the sampled estimators' proxies differ
// between ranks), kept as "rank<r>.backward_strategy.*" for the ranks r >= 1. `allocation`: the
// ratios of --wta-allocation variance (metadata "wta_allocation"), or null.
void save_checkpoint(const std::string& dir, const vit::VisionTransformer& model, const nn::Optimizer& optimizer,
                     const TrainPosition& position, const Options& options, const std::string& run_id,
                     const vit::VisionTransformer* ema = nullptr,
                     const std::vector<std::map<std::string, Tensor>>& rank_strategies = {},
                     const AllocatedRatios* allocation = nullptr);

// The ratios save_checkpoint stored for --wta-allocation variance; nullopt when the checkpoint has
// none. IoError naming the file for a malformed entry.
std::optional<AllocatedRatios> load_allocated_ratios(const std::string& dir);

// Restores model, optimizer and the generators from the checkpoint in `dir` and returns the
// position. IoError naming the file for a file that is not a train_vit checkpoint, for two files
// of different checkpoints, for missing, extra or mis-shaped state and for metadata out of
// range (epoch in [0, --epochs], batch in [0, steps_per_epoch), step = epoch * steps_per_epoch
// + batch); ValueError when the checkpoint was written by a run of another world size (its
// configuration's world_size; 1 when absent), and when its configuration differs from `options`
// in anything else that changes the trajectory (listing the differences). In a data-parallel
// run every rank loads the same checkpoint (rank 0 wrote it; the folder must be shared), rank r
// its own strategy state (rank<r>.*) where the checkpoint has it. `ema` (--model-ema, else null) gets the
// averaged weights, strictly.
TrainPosition load_checkpoint(const std::string& dir, vit::VisionTransformer& model, nn::Optimizer& optimizer,
                              const Options& options, int64_t steps_per_epoch, vit::VisionTransformer* ema = nullptr);

namespace testing {
// Called with the name of each step of a save right after it completed ("write model.safetensors",
// "fsync model.safetensors", ..., "rename latest", ...); a hook that throws simulates a kill
// there. Empty: none.
void set_checkpoint_fault_hook(std::function<void(const std::string& point)> hook);
}  // namespace testing

}  // namespace tg::train
