// The configuration of a train_vit run: the command-line flags (CLI11), the device-dependent
// recipe that fills in flags the user did not give (a full recipe on a GPU, a run sized for a
// few CPU cores otherwise), and the validation that rejects bad values and combinations before
// any work. Every usage error is a tg::ValueError (or NotImplementedError for an unsupported
// choice) whose message names the flag, what was expected and what was found.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/device.h"
#include "dist/env.h"
#include "nn/layers.h"
#include "ops/matmul/strategy.h"
#include "ops/precision.h"

namespace tg::train {

struct Options {
  // Data.
  std::string dataset = "fashion-mnist";  // fashion-mnist | cifar10 | cifar100 | cifar100-coarse | synthetic
  std::string data_dir;                   // empty: the dataset's default location
  std::string augment = "auto";           // auto | none | crop-flip
  int64_t train_subset = 0;               // 0: the whole training set
  int64_t test_subset = 0;                // 0: the whole test set
  // Model.
  std::string model = "vit-small";  // vit-tiny | vit-small | vit-base
  int64_t patch = 4, img = 32;
  int64_t depth = 0;  // 0: the preset's block count
  // Optimization.
  int64_t epochs = 5, batch_size = 128;
  double lr = 1e-3;
  std::string optimizer = "adamw";  // adam | adamw | sgd
  double weight_decay = 0.05;
  double warmup_epochs = 1;
  double label_smoothing = 0.1;
  double clip_grad = 1.0;  // 0: no clipping
  // Update each parameter as soon as backward completes its gradient, and drop the gradient
  // (nn::Optimizer::apply_in_backward): no whole-model gradient set alive. Needs --clip-grad 0.
  bool optimizer_in_backward = false;
  // Regularisers of timm's recipes (0 / false: off).
  bool trivial_augment = false;     // TrivialAugment (wide) on the host before crop/flip
  double mixup = 0, cutmix = 0;     // Beta(alpha, alpha) of mixup and of cutmix
  double mixup_prob = 1.0, mixup_switch_prob = 0.5;
  double drop_path = 0;             // stochastic depth of the last block (linear from 0 over depth)
  bool model_ema = false;           // evaluate (and save) an EMA of the weights
  double model_ema_decay = 0.9998;
  // Backward strategy.
  std::string backward = "exact";  // exact | wta-crs | crs | topk
  double ratio = 0.3;
  // Comma list of the matmul targets, or all. The four linears by default: sampling the attention
  // matmuls needs the explicit attention and costs more accuracy (docs/results.md).
  std::string wta_targets = "qkv,proj,fc1,fc2";
  std::string wta_blocks = "all";
  // The sampled estimator's knobs (StrategyConfig, ops/matmul/strategy.h): the proxy of the
  // gradient rows' norms (position-ema | none), its EMA factor, the least rows kept per item and
  // the uniform share of the sampling probabilities.
  std::string wta_proxy = "position-ema";
  double wta_ema_beta = 0.9;
  int64_t wta_k_min = 10;
  double wta_alpha = 0.05;
  // uniform | variance: one --ratio for every sampled linear, or per-(block, linear) ratios that
  // minimise the predicted variance at the uniform plan's memory (apps/vit/ratio_allocation.h),
  // from --wta-allocation-batches calibration passes before training.
  std::string wta_allocation = "uniform";
  int64_t wta_allocation_batches = 4;
  bool recompute_gelu = false;      // fc1+GELU recomputes fc1's output in backward
  std::string saved_dtype = "same";  // same | bf16: dtype of what the six targets keep for backward
  // Execution.
  std::string device = "auto";     // auto | cpu | cuda | cuda:N
  std::string precision = "fp32";  // fp32 | tf32 | bf16
  // fused | explicit; fused unless given, or unless a sampled backward samples the attention
  // matmuls (resolve_options then picks explicit, which they need).
  std::string attention = "fused";
  // auto | cudnn | tapegrad: the kernels of the bf16 fused attention on CUDA (ops/attention.h).
  std::string attention_backend = "auto";
  // none | all | indices and ranges like 0-5,11: blocks that keep only their input and rerun
  // their forward in backward (nn::Block::set_checkpoint; the gradients do not change).
  std::string checkpoint_blocks = "none";
  // qkv and fc1 recompute their inputs (the LayerNorm outputs) in backward instead of keeping
  // them (nn::Block::set_recompute_norms; the gradients do not change).
  bool recompute_norms = false;
  // on | off: capture the training step once as a CUDA graph and replay it (CUDA only; on by
  // default there, and off when the run cannot be captured — see resolve_options).
  std::string cuda_graphs = "on";
  uint64_t seed = 0;
  int64_t max_steps = 0;   // 0: run every epoch
  int64_t eval_every = 0;  // 0: evaluate after each epoch only
  int64_t log_every = 50;
  // Files.
  std::string save, resume, init_from, metrics_out;
  bool reset_head = false;  // --init-from without the classifier: the head is re-initialised
  bool memory_report = false;
  // Memory planning (docs/memory-planning.md): print the plan and the predicted peak and exit;
  // choose per-block plans for a peak budget; the capacity a fractional budget is of; never
  // sample for the budget; report the largest batch that fits the budget and exit.
  bool plan_only = false;
  std::string memory_budget;    // empty: none; "3GB", "2.5GiB", "0.5" (of the capacity)
  std::string memory_capacity;  // empty: the CUDA device's total memory (none on the CPU)
  bool no_sampling = false;
  bool find_max_batch = false;
  bool calibrate = false;       // time uniform plans first; predict and minimise step time in ms
  // Data parallelism (docs/distributed.md): how long any rank waits for the others (store,
  // rendezvous, every collective) before it fails naming the ranks that did not answer.
  double dist_timeout = 300;    // seconds

  // Filled by resolve_options.
  Device resolved_device;
  bool cpu_recipe = false;          // the CPU-sized defaults were applied
  std::string recipe_flags;         // the flags the recipe set, as a command-line fragment
  int64_t memory_budget_bytes = 0;  // --memory-budget in bytes (0: none)
  // The launcher environment the run was resolved in (rank 0 of 1 without one): each rank reads
  // its shard of the data, and the global batch is batch_size x launch.world_size.
  dist::LaunchEnv launch;
};

// Parses argv and resolves the result (resolve_options) for the launcher environment `env`.
// Returns nullopt after printing the help to `out` for --help; ValueError for anything CLI11
// rejects (unknown flag, malformed number) and for every problem resolve_options finds.
std::optional<Options> parse_command_line(int argc, const char* const* argv, std::ostream& out,
                                          const dist::LaunchEnv& env = {});

// Picks the device (auto: CUDA when a GPU is usable; in a data-parallel job, auto and cuda mean
// cuda:LOCAL_RANK), applies the recipe of that device to every flag not in `given` (the long
// names of the flags on the command line, e.g. "--model"), and validates the result, for a
// data-parallel `env` too (what such runs refuse: docs/distributed.md); ValueError /
// NotImplementedError on the first problem.
void resolve_options(Options& options, const std::set<std::string>& given, const dist::LaunchEnv& env = {});

// The block count after --depth; the targets and blocks that use the strategy (vit::parse_*
// with the flag's name in the message).
int64_t model_depth(const Options& options);
std::set<nn::MatmulTarget> strategy_targets(const Options& options);
std::set<int64_t> strategy_blocks(const Options& options);
// The blocks of --checkpoint-blocks (empty for none); ValueError naming the flag otherwise.
std::set<int64_t> checkpointed_blocks(const Options& options);

// --backward, --ratio and --seed as the strategy factory's configuration (the seed of this
// rank: rank_seed, core/rng.h).
StrategyConfig strategy_config(const Options& options);
// --precision and --saved-dtype as the precision policy of the run.
PrecisionPolicy precision_policy(const Options& options);

// The dataset folder (--data-dir or the dataset's default).
std::string data_directory(const Options& options);

// The items joined by `separator` ("qkv,fc1"), for messages and the printout.
std::string join(const std::vector<std::string>& items, const char* separator);

// "key: value" lines of the whole configuration, for the start of a run.
std::string describe(const Options& options);

// The options as JSON (checkpoint metadata) and the fields of two configurations that must
// agree for an exact continuation (those that change the trajectory), as "--flag a vs b" items.
nlohmann::json to_json(const Options& options);
std::vector<std::string> trajectory_differences(const nlohmann::json& saved, const nlohmann::json& current);

}  // namespace tg::train
