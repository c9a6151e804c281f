// train_vit's flags: CLI11 definitions, the GPU and CPU recipes and the validation (the
// configuration's printout and JSON: options_output.cpp).
#include "apps/train_vit/options.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "apps/train_vit/checkpoint.h"
#include "apps/train_vit/planning.h"
#include "apps/vit/strategies.h"
#include "ops/attention.h"
#include "apps/vit/vit.h"
#include "core/error.h"
#include "core/rng.h"
#include "dist/data_parallel.h"

namespace tg::train {

namespace {

const char* const kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Every flag with its field, in the order of the help and of describe().
void add_flags(CLI::App& app, Options& o) {
  app.option_defaults()->always_capture_default();
  app.add_option("--dataset", o.dataset, "fashion-mnist | cifar10 | cifar100 | cifar100-coarse | synthetic");
  app.add_option("--data-dir", o.data_dir,
                 "dataset folder (default for fashion-mnist: /usr/share/datasets/fashion-mnist; required for CIFAR)");
  app.add_option("--augment", o.augment, "auto | none | crop-flip (auto: crop-flip for CIFAR, none otherwise)");
  app.add_option("--train-subset", o.train_subset, "train on the first N training images (0: all)");
  app.add_option("--test-subset", o.test_subset, "evaluate on the first N test images (0: all)");
  app.add_option("--model", o.model, "vit-tiny | vit-small | vit-base (defaults shown are the GPU recipe's)");
  app.add_option("--patch", o.patch, "patch size in pixels (must divide --img)");
  app.add_option("--img", o.img, "image size the model sees (images are resized to it)");
  app.add_option("--depth", o.depth, "number of transformer blocks (0: the preset's 12)");
  app.add_option("--epochs", o.epochs, "training epochs (the LR schedule spans them)");
  app.add_option("--batch-size", o.batch_size, "training batch size");
  app.add_option("--lr", o.lr, "peak learning rate");
  app.add_option("--optimizer", o.optimizer, "adam | adamw | sgd (SGD with momentum 0.9)");
  app.add_option("--weight-decay", o.weight_decay, "weight decay, default 0.05 with adamw and 0 otherwise (never on biases, norms, cls_token, pos_embed)");
  app.add_option("--warmup-epochs", o.warmup_epochs, "linear warm-up length in epochs (fractions allowed)");
  app.add_option("--label-smoothing", o.label_smoothing, "label smoothing in [0, 1)");
  app.add_option("--clip-grad", o.clip_grad, "clip the global gradient norm to this value (0: off)");
  app.add_flag("--optimizer-in-backward", o.optimizer_in_backward,
               "update each parameter as soon as backward completes its gradient, then free the gradient (no "
               "whole-model gradient buffer alive; needs --clip-grad 0)");
  app.add_flag("--trivial-augment", o.trivial_augment,
               "TrivialAugment (torchvision's TrivialAugmentWide) on each training image, before crop and flip; "
               "batches are then assembled on the host");
  app.add_option("--mixup", o.mixup, "mixup alpha: mix each batch with its reverse, lam ~ Beta(alpha, alpha) (0: off)");
  app.add_option("--cutmix", o.cutmix, "cutmix alpha: paste a box of the reversed batch, area 1 - lam (0: off)");
  app.add_option("--mixup-prob", o.mixup_prob, "probability that a batch is mixed (with --mixup or --cutmix)");
  app.add_option("--mixup-switch-prob", o.mixup_switch_prob,
                 "probability of cutmix instead of mixup when both --mixup and --cutmix are on");
  app.add_option("--drop-path", o.drop_path,
                 "stochastic depth rate of the last block, rising linearly from 0 at the first block "
                 "(timm's drop_path_rate)");
  app.add_flag("--model-ema", o.model_ema,
               "keep an exponential moving average of the weights (timm's ModelEmaV2); evaluate and save it");
  app.add_option("--model-ema-decay", o.model_ema_decay, "decay of --model-ema: ema = decay * ema + (1 - decay) * w");
  app.add_option("--backward", o.backward, join_names(strategy_names(), " | ") + ": how the matmul weight gradients are formed");
  app.add_option("--ratio", o.ratio, "sampling budget rho in (0, 1] of the sampled backward");
  app.add_option("--wta-targets", o.wta_targets,
                 "comma list of qkv,proj,fc1,fc2,attn-scores,attn-context, or all (default: the four linears)");
  app.add_option("--wta-blocks", o.wta_blocks, "blocks using the strategy: all, or indices and ranges like 0-5,11");
  app.add_option("--wta-proxy", o.wta_proxy,
                 "position-ema | none: the sampled estimator's proxy of each row's gradient norm (an EMA per token "
                 "position of earlier backward passes, or none: probabilities from the activation rows alone)")
      ->check(CLI::IsMember({"position-ema", "none"}));
  app.add_option("--wta-ema-beta", o.wta_ema_beta, "the proxy's EMA factor in [0, 1] (proxy = beta * proxy + (1 - beta) * new)");
  app.add_option("--wta-k-min", o.wta_k_min, "the least rows a sampled operand keeps per item (>= 1)");
  app.add_option("--wta-alpha", o.wta_alpha, "the uniform share of the sampling probabilities, in [0, 1]");
  app.add_option("--wta-allocation", o.wta_allocation,
                 "uniform (--ratio for every sampled linear) | variance (per-layer ratios with the least summed "
                 "predicted variance at the memory of the uniform plan, chosen from calibration passes)");
  app.add_option("--wta-allocation-batches", o.wta_allocation_batches,
                 "training batches the variance allocation calibrates on (forward and backward, no update)");
  app.add_flag("--recompute-gelu", o.recompute_gelu,
               "fc1+GELU keeps fc1's input only and recomputes its output in backward (less activation memory)");
  app.add_option("--saved-dtype", o.saved_dtype,
                 "same | bf16: what every matmul node keeps for backward (all rows or the sampled ones) is "
                 "stored in this dtype; bf16 halves it");
  app.add_option("--device", o.device, "auto | cpu | cuda | cuda:N (auto: CUDA when a GPU is usable)");
  app.add_option("--precision", o.precision, "fp32 | tf32 (TF32 tensor cores for f32 GEMMs on CUDA) | bf16 (mixed precision: bf16 activations and GEMMs, f32 weights, statistics and optimizer state)");
  app.add_option("--seed", o.seed, "seed of initialization, shuffling, augmentation and sampling");
  app.add_option("--max-steps", o.max_steps, "stop after this many optimizer steps (0: no limit)");
  app.add_option("--eval-every", o.eval_every, "also evaluate every N steps (0: after each epoch only)");
  app.add_option("--log-every", o.log_every, "progress line (and metrics record) every N steps");
  app.add_option("--save", o.save, "checkpoint folder, written after each epoch and at the end");
  app.add_option("--resume", o.resume, "continue exactly from a checkpoint folder written by --save");
  app.add_option("--attention", o.attention,
                 "fused (default: keeps no attention probabilities) | explicit (matmul, softmax, matmul; needed to "
                 "sample attn-scores / attn-context, and chosen by itself then)");
  app.add_option("--attention-backend", o.attention_backend,
                 "auto (default: cuDNN's fused attention for bf16 where it accepts the shapes, else tapegrad's "
                 "kernels) | cudnn | tapegrad");
  app.add_option("--checkpoint-blocks", o.checkpoint_blocks,
                 "none (default) | all | indices and ranges like 0-5,11: blocks that keep only their input for "
                 "backward and rerun their forward there (activation checkpointing; same gradients)");
  app.add_flag("--recompute-norms", o.recompute_norms,
               "qkv and fc1 recompute their inputs (the LayerNorm outputs) in backward instead of keeping them "
               "(same gradients; exact strategies only: a sampled qkv or fc1 keeps its rows)");
  app.add_option("--cuda-graphs", o.cuda_graphs,
                 "on (default on CUDA: the training step is captured once and replayed, docs/cuda-graphs.md) | off");
  app.add_option("--init-from", o.init_from, "initialize the model from a safetensors file (timm names, strict)");
  app.add_flag("--reset-head", o.reset_head,
               "with --init-from: load everything but the classifier (head.*), which is re-initialised for the "
               "dataset's class count (trunc_normal 0.02 weight, zero bias), e.g. to fine-tune on another dataset");
  app.add_option("--metrics-out", o.metrics_out, "write metrics as JSON Lines to this file");
  app.add_flag("--memory-report", o.memory_report,
               "print the allocator summary and, per block and kind, what is kept, recomputed and sampled");
  app.add_flag("--plan-only", o.plan_only,
               "print the per-block memory plan and the predicted peak allocated memory (broken down), then exit");
  app.add_option("--memory-budget", o.memory_budget,
                 "choose per-block plans (recompute norms / GELU, checkpoint blocks, WTA-CRS on fc2 only where exact "
                 "techniques cannot fit) whose predicted peak fits: bytes like 3GB, 2.5GiB, 800MB, or a fraction of "
                 "the device's memory like 0.5 (of --memory-capacity on the CPU)");
  app.add_option("--memory-capacity", o.memory_capacity,
                 "the memory a fractional --memory-budget is a fraction of (default: the CUDA device's total; the "
                 "CPU has none)");
  app.add_flag("--no-sampling", o.no_sampling, "with --memory-budget: exact techniques only, never WTA-CRS");
  app.add_flag("--calibrate", o.calibrate,
               "with --plan-only or --memory-budget: first time a few steps of uniform plans on the run's device "
               "(exact, norms, norms+gelu, checkpoint, wta-crs fc2), and predict (and let the planner minimise) step "
               "times in ms from those per-technique costs");
  app.add_flag("--find-max-batch", o.find_max_batch,
               "with --memory-budget: print the largest batch whose best plan fits the budget, then exit");
  app.add_option("--dist-timeout", o.dist_timeout,
                 "data-parallel runs (WORLD_SIZE > 1): seconds any rank waits for the others (rendezvous, "
                 "collectives) before it fails naming the ranks that did not answer");
}

// Regularisers whose per-step random choices are made on the host (mixup's lam and box, drop
// path's generator offset): a CUDA graph would freeze them.
bool draws_on_host(const Options& o) { return o.mixup > 0 || o.cutmix > 0 || o.drop_path > 0; }

// A sampled backward whose targets include an attention matmul (throws for an unknown target).
bool samples_attention(const Options& o) { return o.backward != "exact" && vit::includes_attention(strategy_targets(o)); }

void check_choice(const char* flag, const std::string& value, const std::vector<std::string>& names) {
  TG_CHECK(std::find(names.begin(), names.end(), value) != names.end(), ValueError, flag, ": unknown value '", value,
           "' (expected ", join(names, ", "), ")");
}

// The CPU-sized run: a 3-block ViT-Tiny at Fashion-MNIST's native 28 px with 7-px patches (17
// tokens) on a subset of the training set, measured at 82% test accuracy in about 7 minutes on
// 2 cores (docs/train_vit.md).
void apply_cpu_recipe(Options& o, const std::set<std::string>& given) {
  std::ostringstream flags;
  auto set = [&](const char* flag, auto& field, auto value) {
    if (given.count(flag)) return;
    field = value;
    flags << (flags.tellp() > 0 ? " " : "") << flag << " " << value;
  };
  set("--model", o.model, std::string("vit-tiny"));
  set("--depth", o.depth, int64_t{3});
  set("--img", o.img, int64_t{28});
  set("--patch", o.patch, int64_t{7});
  set("--batch-size", o.batch_size, int64_t{64});
  set("--train-subset", o.train_subset, int64_t{20000});
  set("--epochs", o.epochs, int64_t{2});
  set("--warmup-epochs", o.warmup_epochs, 0.2);
  set("--log-every", o.log_every, int64_t{25});
  o.cpu_recipe = flags.tellp() > 0;
  o.recipe_flags = flags.str();
}

// --plan-only, --memory-budget, --memory-capacity, --no-sampling, --find-max-batch: their values
// and what they need or exclude. The budget in bytes goes into memory_budget_bytes.
void validate_planning(Options& o, const std::set<std::string>& given) {
  TG_CHECK(o.memory_capacity.empty() || !o.memory_budget.empty(), ValueError,
           "--memory-capacity has no effect without --memory-budget (it is what a fractional budget is of)");
  TG_CHECK(!o.calibrate || o.plan_only || !o.memory_budget.empty(), ValueError,
           "--calibrate needs --plan-only or --memory-budget (it calibrates their step-time predictions)");
  for (const char* flag : {"--no-sampling", "--find-max-batch"})
    TG_CHECK(!given.count(flag) || !o.memory_budget.empty(), ValueError, flag,
             " needs --memory-budget (e.g. --memory-budget 3GB)");
  if (o.memory_budget.empty()) return;
  const std::optional<int64_t> capacity = o.memory_capacity.empty()
                                              ? device_memory_capacity(o.resolved_device)
                                              : std::optional<int64_t>(parse_byte_size(o.memory_capacity, "--memory-capacity"));
  o.memory_budget_bytes = parse_memory_budget(o.memory_budget, capacity);
  for (const char* flag : {"--checkpoint-blocks", "--recompute-norms", "--recompute-gelu", "--backward", "--wta-targets",
                           "--wta-blocks"})
    TG_CHECK(!given.count(flag), ValueError, "--memory-budget chooses the per-block plan itself, so ", flag,
             " cannot be given with it (drop ", flag, ", or drop --memory-budget to give the plan by hand)");
  TG_CHECK(o.attention == "fused", ValueError,
           "--memory-budget needs --attention fused: the memory model does not cover the explicit attention");
}

// --wta-allocation variance: the memory model and the i.i.d. variance formula must cover the run.
void validate_allocation(const Options& o, const std::set<std::string>& given) {
  check_choice("--wta-allocation", o.wta_allocation, {"uniform", "variance"});
  if (o.wta_allocation == "uniform") {
    TG_CHECK(!given.count("--wta-allocation-batches"), ValueError,
             "--wta-allocation-batches has no effect without --wta-allocation variance");
    return;
  }
  const char* const flag = "--wta-allocation variance";
  TG_CHECK(o.backward == "wta-crs" || o.backward == "crs", ValueError, flag,
           " predicts the variance of i.i.d. draws: expected --backward wta-crs or crs, got ", o.backward);
  TG_CHECK(o.wta_allocation_batches >= 1, ValueError, "--wta-allocation-batches must be at least 1, got ",
           o.wta_allocation_batches);
  TG_CHECK(!samples_attention(o) && o.attention == "fused", ValueError, flag,
           " allocates over the four linears with the fused attention (the memory model's scope): expected "
           "--wta-targets among qkv,proj,fc1,fc2 and --attention fused, got --wta-targets ", o.wta_targets,
           " and --attention ", o.attention);
  TG_CHECK(o.memory_budget.empty(), ValueError, flag, " and --memory-budget both choose the ratios; give one");
  TG_CHECK(!o.optimizer_in_backward, ValueError, flag,
           " calibrates with backward passes that must not update the weights; drop --optimizer-in-backward");
  TG_CHECK(!o.launch.distributed(), NotImplementedError, flag, " calibrates on one rank's batches; with WORLD_SIZE=",
           o.launch.world_size, " the ranks could choose different ratios: run it in one process");
}

// --dist-timeout, and what a data-parallel run (WORLD_SIZE > 1) needs from the build and refuses.
void validate_data_parallel(const Options& o) {
  TG_CHECK(o.dist_timeout > 0 && o.dist_timeout <= 1e6, ValueError,
           "--dist-timeout must be a number of seconds in (0, 1000000], got ", o.dist_timeout);
  const dist::LaunchEnv& env = o.launch;
  if (!env.distributed()) return;
  if (o.resolved_device.is_cuda()) dist::require_cuda_data_parallel(env);
  TG_CHECK(!o.optimizer_in_backward, ValueError,
           "--optimizer-in-backward updates each parameter from this rank's gradient inside backward, before the "
           "all-reduce has averaged it over the ", env.world_size, " ranks (WORLD_SIZE=", env.world_size,
           "); drop --optimizer-in-backward, or run one process");
  TG_CHECK(o.cuda_graphs == "off", NotImplementedError, "--cuda-graphs on with data parallelism (WORLD_SIZE=",
           env.world_size,
           "): the gradient all-reduce is launched from backward's hooks on a stream of its own and each step waits "
           "for it on the host with a timeout, which a captured graph cannot do; use --cuda-graphs off (the default "
           "of data-parallel runs)");
  TG_CHECK(!o.calibrate, ValueError, "--calibrate times steps on each of the ", env.world_size,
           " ranks separately, which could choose different plans for different ranks; drop --calibrate in "
           "data-parallel runs (without it the plan depends on the flags alone)");
}

void validate(Options& o, const std::set<std::string>& given) {
  check_choice("--dataset", o.dataset, {"fashion-mnist", "cifar10", "cifar100", "cifar100-coarse", "synthetic"});
  check_choice("--augment", o.augment, {"auto", "none", "crop-flip"});
  check_choice("--model", o.model, {"vit-tiny", "vit-small", "vit-base"});
  check_choice("--optimizer", o.optimizer, {"adam", "adamw", "sgd"});
  check_choice("--backward", o.backward, strategy_names());
  (void)precision_mode(o.precision);
  TG_CHECK(o.precision != "tf32" || o.resolved_device.is_cuda(), ValueError,
           "--precision tf32 needs a CUDA device (TF32 is a tensor-core mode), but the run is on ",
           o.resolved_device.str());

  if (o.dataset == "synthetic") {
    TG_CHECK(o.data_dir.empty(), ValueError, "--data-dir has no effect with --dataset synthetic (it is generated)");
  } else if (o.dataset != "fashion-mnist") {
    TG_CHECK(!o.data_dir.empty(), ValueError, "--dataset ", o.dataset,
             " needs --data-dir DIR: the folder of its binary version (see README.md, 'Training the ViT')");
  }
  TG_CHECK(o.train_subset >= 0 && o.test_subset >= 0, ValueError,
           "--train-subset and --test-subset must be >= 0 (0: everything), got ", o.train_subset, " and ", o.test_subset);

  TG_CHECK(o.patch > 0 && o.img > 0, ValueError, "--patch and --img must be positive, got ", o.patch, " and ", o.img);
  TG_CHECK(o.img % o.patch == 0, ValueError, "--patch ", o.patch, " does not divide --img ", o.img,
           " (the image must split into whole patches)");
  TG_CHECK(o.depth >= 0, ValueError, "--depth must be >= 0 (0: the preset's depth), got ", o.depth);

  TG_CHECK(o.epochs > 0, ValueError, "--epochs must be positive, got ", o.epochs);
  TG_CHECK(o.batch_size > 0, ValueError, "--batch-size must be positive, got ", o.batch_size);
  // Every real-valued flag is finite: inf or nan would pass a sign check and poison the run.
  const std::pair<const char*, double> reals[] = {{"--lr", o.lr},
                                                   {"--weight-decay", o.weight_decay},
                                                   {"--warmup-epochs", o.warmup_epochs},
                                                   {"--label-smoothing", o.label_smoothing},
                                                   {"--clip-grad", o.clip_grad},
                                                   {"--mixup", o.mixup},
                                                   {"--cutmix", o.cutmix},
                                                   {"--mixup-prob", o.mixup_prob},
                                                   {"--mixup-switch-prob", o.mixup_switch_prob},
                                                   {"--drop-path", o.drop_path},
                                                   {"--model-ema-decay", o.model_ema_decay},
                                                   {"--ratio", o.ratio},
                                                   {"--wta-ema-beta", o.wta_ema_beta},
                                                   {"--wta-alpha", o.wta_alpha},
                                                   {"--dist-timeout", o.dist_timeout}};
  for (const auto& [flag, value] : reals)
    TG_CHECK(std::isfinite(value), ValueError, flag, " must be a finite number, got ", value);
  TG_CHECK(o.lr > 0, ValueError, "--lr must be positive, got ", o.lr);
  TG_CHECK(o.weight_decay >= 0, ValueError, "--weight-decay must be >= 0, got ", o.weight_decay);
  TG_CHECK(o.warmup_epochs >= 0 && o.warmup_epochs <= static_cast<double>(o.epochs), ValueError,
           "--warmup-epochs must be in [0, --epochs] = [0, ", o.epochs, "], got ", o.warmup_epochs);
  TG_CHECK(o.label_smoothing >= 0 && o.label_smoothing < 1, ValueError, "--label-smoothing must be in [0, 1), got ",
           o.label_smoothing);
  TG_CHECK(o.clip_grad >= 0, ValueError, "--clip-grad must be >= 0 (0: off), got ", o.clip_grad);
  TG_CHECK(!o.optimizer_in_backward || o.clip_grad == 0, ValueError,
           "--optimizer-in-backward updates each parameter as soon as its gradient is complete, so the global "
           "gradient norm that --clip-grad ", o.clip_grad, " needs never exists: give --clip-grad 0");
  TG_CHECK(o.mixup >= 0 && o.cutmix >= 0, ValueError, "--mixup and --cutmix must be >= 0 (0: off), got ", o.mixup,
           " and ", o.cutmix);
  for (const auto& [flag, value] :
       {std::pair{"--mixup-prob", o.mixup_prob}, std::pair{"--mixup-switch-prob", o.mixup_switch_prob}}) {
    TG_CHECK(value >= 0 && value <= 1, ValueError, flag, " must be in [0, 1], got ", value);
    TG_CHECK(!given.count(flag) || o.mixup > 0 || o.cutmix > 0, ValueError, flag,
             " has no effect without --mixup or --cutmix (give an alpha > 0)");
  }
  TG_CHECK(!given.count("--mixup-switch-prob") || (o.mixup > 0 && o.cutmix > 0), ValueError,
           "--mixup-switch-prob chooses between mixup and cutmix, so it needs both --mixup and --cutmix > 0, got ",
           o.mixup, " and ", o.cutmix);
  TG_CHECK(o.drop_path >= 0 && o.drop_path < 1, ValueError, "--drop-path must be in [0, 1), got ", o.drop_path);
  TG_CHECK(o.model_ema_decay >= 0 && o.model_ema_decay < 1, ValueError, "--model-ema-decay must be in [0, 1), got ",
           o.model_ema_decay);
  TG_CHECK(!given.count("--model-ema-decay") || o.model_ema, ValueError,
           "--model-ema-decay has no effect without --model-ema");

  TG_CHECK(o.ratio > 0 && o.ratio <= 1, ValueError, "--ratio must be in (0, 1], got ", o.ratio);
  TG_CHECK(o.wta_ema_beta >= 0 && o.wta_ema_beta <= 1, ValueError, "--wta-ema-beta must be in [0, 1], got ",
           o.wta_ema_beta);
  TG_CHECK(o.wta_alpha >= 0 && o.wta_alpha <= 1, ValueError, "--wta-alpha must be in [0, 1], got ", o.wta_alpha);
  TG_CHECK(o.wta_k_min >= 1, ValueError, "--wta-k-min must be at least 1, got ", o.wta_k_min);
  const std::set<nn::MatmulTarget> targets = strategy_targets(o);  // throws for an unknown target
  TG_CHECK(!(o.recompute_gelu && o.backward != "exact" && targets.count(nn::MatmulTarget::fc1)), ValueError,
           "--recompute-gelu keeps fc1's input for the recomputation, so a sampled fc1 would save nothing (its weight "
           "gradient would be exact): leave fc1 out of --wta-targets (e.g. --wta-targets qkv,proj,fc2) or drop "
           "--recompute-gelu");
  check_choice("--attention", o.attention, {"fused", "explicit"});
  (void)parse_cuda_attention_backend(o.attention_backend);  // throws for an unknown value
  check_choice("--cuda-graphs", o.cuda_graphs, {"on", "off"});
  TG_CHECK(o.cuda_graphs == "off" || o.resolved_device.is_cuda(), ValueError,
           "--cuda-graphs on needs a CUDA device, but the run is on ", o.resolved_device.str());
  TG_CHECK(o.cuda_graphs == "off" || !draws_on_host(o), NotImplementedError,
           "--cuda-graphs on with --mixup, --cutmix or --drop-path: their random draws are chosen on the host each "
           "step, which a captured graph would replay unchanged; use --cuda-graphs off");
  TG_CHECK(o.attention == "explicit" || !samples_attention(o), ValueError,
           "--attention fused has no attention matmuls to sample, but --wta-targets includes attn-scores or "
           "attn-context: use --attention explicit, or leave them out (e.g. --wta-targets qkv,proj,fc1,fc2)");
  (void)strategy_blocks(o);   // throws for a malformed list or a block out of range
  (void)checkpointed_blocks(o);
  (void)parse_precision_dtype(o.saved_dtype, "--saved-dtype");
  // Builds one strategy object, so that a bad parameter fails before any work.
  (void)make_strategy(strategy_config(o), 0);
  validate_planning(o, given);
  validate_allocation(o, given);
  if (o.backward == "exact") {
    std::vector<std::string> sampled = strategy_names();
    sampled.erase(std::find(sampled.begin(), sampled.end(), strategy_info(StrategyKind::exact).name));
    for (const char* flag :
         {"--ratio", "--wta-targets", "--wta-blocks", "--wta-proxy", "--wta-ema-beta", "--wta-k-min", "--wta-alpha",
          "--wta-allocation"})
      TG_CHECK(!given.count(flag) || (o.memory_budget_bytes > 0 && std::string(flag) == "--ratio"), ValueError, flag, " has no effect with --backward exact; choose a sampled backward (--backward ",
               join_names(sampled), ")");
  }

  TG_CHECK(o.max_steps >= 0 && o.eval_every >= 0, ValueError, "--max-steps and --eval-every must be >= 0, got ",
           o.max_steps, " and ", o.eval_every);
  TG_CHECK(o.log_every > 0, ValueError, "--log-every must be positive, got ", o.log_every);

  TG_CHECK(o.resume.empty() || o.init_from.empty(), ValueError,
           "--resume and --init-from exclude each other (a resumed run takes its weights from the checkpoint)");
  namespace fs = std::filesystem;
  if (!o.resume.empty()) {
    try {
      for (const std::string& file : {checkpoint_files(o.resume).model, checkpoint_files(o.resume).train_state})
        TG_CHECK(fs::is_regular_file(file), ValueError, "--resume ", o.resume, ": ", file,
                 " does not exist (expected a folder written by --save)");
    } catch (const IoError& e) {
      TG_THROW(ValueError, e.what());
    }
  }
  // Before any work: an unwritable --save would otherwise fail after the first epoch.
  if (!o.save.empty()) check_save_dir(o.save);  // on every rank (rank 0 alone writes)
  TG_CHECK(!o.reset_head || !o.init_from.empty(), ValueError,
           "--reset-head needs --init-from FILE (it re-initialises the classifier of the weights loaded from FILE)");
  TG_CHECK(o.init_from.empty() || fs::is_regular_file(o.init_from), ValueError, "--init-from: '", o.init_from,
           "' does not exist (expected a safetensors file)");
  validate_data_parallel(o);
}

}  // namespace

std::optional<Options> parse_command_line(int argc, const char* const* argv, std::ostream& out,
                                          const dist::LaunchEnv& env) {
  CLI::App app("train_vit: train a Vision Transformer with exact or sampled (WTA-CRS) backward", "train_vit");
  Options options;
  add_flags(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    TG_THROW(ValueError, e.what(), " (train_vit --help lists the flags)");
  }
  std::set<std::string> given;
  for (const CLI::Option* option : app.get_options())
    if (option->count() > 0) given.insert(option->get_name());
  resolve_options(options, given, env);
  return options;
}

void resolve_options(Options& o, const std::set<std::string>& given, const dist::LaunchEnv& env) {
  check_choice("--device", o.device.rfind("cuda:", 0) == 0 ? std::string("cuda") : o.device, {"auto", "cpu", "cuda"});
  o.launch = env;
  // Every rank of a data-parallel job has a GPU of its own: cuda:LOCAL_RANK.
  TG_CHECK(!env.distributed() || o.device.rfind("cuda:", 0) != 0, ValueError, "--device ", o.device,
           " names one GPU, but each rank of a data-parallel job (WORLD_SIZE=", env.world_size,
           ") uses its own, cuda:LOCAL_RANK; give --device cuda or auto");
  const int gpu = env.distributed() ? env.local_rank : 0;
  if (o.device == "auto") o.resolved_device = cuda_is_available() ? Device::cuda(gpu) : Device::cpu();
  else if (o.device == "cuda") o.resolved_device = Device::cuda(gpu);
  else o.resolved_device = Device::parse(o.device);
  check_device_usable(o.resolved_device);
  if (o.resolved_device.is_cpu()) apply_cpu_recipe(o, given);
  // The default decay suits AdamW's decoupled form; as an L2 term (adam, sgd) it would not.
  if (!given.count("--weight-decay") && o.optimizer != "adamw") o.weight_decay = 0;
  if (!given.count("--attention") && samples_attention(o)) o.attention = "explicit";
  // Graphs are a CUDA feature, and replay what they captured: mixup's and drop path's draws are
  // chosen on the host per step, so those runs stay eager.
  // Data-parallel steps wait for their all-reduce on the host (validate_data_parallel).
  if (!given.count("--cuda-graphs") && (o.resolved_device.is_cpu() || draws_on_host(o) || env.distributed()))
    o.cuda_graphs = "off";
  validate(o, given);
}

std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

int64_t model_depth(const Options& o) { return o.depth > 0 ? o.depth : vit::preset(o.model).depth; }

namespace {
// vit::parse_targets / parse_blocks, with the flag named in the message.
template <class Parse>
auto parse_flag(const char* flag, Parse&& parse) {
  try {
    return parse();
  } catch (const ValueError& e) {
    TG_THROW(ValueError, flag, ": ", e.what());
  }
}
}  // namespace

std::set<nn::MatmulTarget> strategy_targets(const Options& o) {
  return parse_flag("--wta-targets", [&] { return vit::parse_targets(o.wta_targets); });
}

std::set<int64_t> strategy_blocks(const Options& o) {
  return parse_flag("--wta-blocks", [&] { return vit::parse_blocks(o.wta_blocks, model_depth(o)); });
}

std::set<int64_t> checkpointed_blocks(const Options& o) {
  if (o.checkpoint_blocks == "none") return {};
  return parse_flag("--checkpoint-blocks", [&] { return vit::parse_blocks(o.checkpoint_blocks, model_depth(o)); });
}

StrategyConfig strategy_config(const Options& o) {
  StrategyConfig config;
  config.kind = parse_strategy(o.backward);
  config.ratio = o.ratio;
  // Each rank samples from a stream of its own (rank 0's is the one-process run's): the ranks'
  // estimates are independent, and their average stays unbiased (docs/WTACRS.md).
  config.seed = rank_seed(o.seed, o.launch.rank);
  config.proxy = o.wta_proxy == "none" ? ProxyKind::none : ProxyKind::position_ema;
  config.ema_beta = o.wta_ema_beta;
  config.k_min = o.wta_k_min;
  config.alpha = o.wta_alpha;
  return config;
}

PrecisionPolicy precision_policy(const Options& o) {
  PrecisionPolicy policy = precision_mode(o.precision);
  policy.saved_dtype = parse_precision_dtype(o.saved_dtype, "--saved-dtype");
  return policy;
}

std::string data_directory(const Options& o) {
  return o.data_dir.empty() && o.dataset == "fashion-mnist" ? kFashionMnistDir : o.data_dir;
}

}  // namespace tg::train
