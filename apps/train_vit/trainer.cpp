// The train_vit training loop.
#include "apps/train_vit/trainer.h"


#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <ostream>

#include "apps/train_vit/allocation.h"
#include "apps/train_vit/checkpoint.h"
#include "apps/train_vit/data_parallel.h"
#include "apps/train_vit/memory_report.h"
#include "apps/train_vit/metrics.h"
#include "apps/train_vit/planning.h"
#include "apps/train_vit/setup.h"
#include "apps/vit/strategies.h"
#include "autograd/engine.h"
#include "core/allocator.h"
#if TG_WITH_CUDA
#include "core/cuda/graph.h"
#endif
#include "core/file_io.h"
#include "core/rng.h"
#include "nn/ema.h"
#include "nn/layers.h"
#include "nn/mixup.h"
#include "nn/safetensors.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/loss.h"
#include "ops/precision.h"
#include "ops/reduce.h"
#include "ops/shape_ops.h"

namespace tg::train {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(std::llround(std::max(seconds, 0.0)));
  char text[32];
  if (s >= 3600) std::snprintf(text, sizeof text, "%lldh%02lldm", static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60));
  else if (s >= 60) std::snprintf(text, sizeof text, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  else std::snprintf(text, sizeof text, "%llds", static_cast<long long>(s));
  return text;
}

class Trainer {
 public:
  Trainer(const Options& options, std::ostream& out, const CommunicatorFactory& make_cuda_communicator)
      : o_(options),
        out_(out),
        device_(options.resolved_device),
        run_id_(new_run_id()),
        make_cuda_communicator_(make_cuda_communicator) {}
  RunSummary run();

 private:
  void setup();
  void init_from_file();
  // --wta-allocation variance: installs per-layer ratios (calibrated, or a resumed checkpoint's)
  // on the run's plan and model.
  void install_allocation(const AllocatedRatios& ratios);
  void train_step();
  // What a step hands back, on the device: the loss and, with clipping, the gradients' norm
  // before clipping and the factor applied, min(1, --clip-grad / norm) (undefined without).
  struct StepOutputs {
    Tensor loss, grad_norm, clip_factor;
  };
  // Forward, loss, backward, clipping and the optimizer's update on `images` and `labels`; the
  // gradients are cleared at the end. What a CUDA graph captures.
  StepOutputs step_body(const Tensor& images, const Tensor& labels);
#if TG_WITH_CUDA
  // Captures step_body on copies of `batch` as the graph (BackendError when it cannot be).
  void capture_step(const data::Batch& batch);
#endif
  void log_progress();
  void evaluate();
  void save();
  void check_free_space();
  void print_summary(const RunSummary& summary);
  int64_t epoch_label() const { return std::min(position_.epoch + 1, o_.epochs); }  // 1-based, for output
  bool writes_files() const { return o_.launch.rank == 0; }  // metrics and checkpoints: rank 0 alone

  const Options& o_;
  std::ostream& out_;
  Device device_;
  std::string run_id_;  // ties the two files of each checkpoint this run writes
  CommunicatorFactory make_cuda_communicator_;
  std::unique_ptr<DataParallel> dp_;  // WORLD_SIZE > 1 only
  TrainData data_;
  std::unique_ptr<data::DataLoader> train_loader_, test_loader_;
  std::unique_ptr<vit::VisionTransformer> model_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  std::optional<nn::Mixup> mixup_;                        // --mixup / --cutmix
  std::unique_ptr<vit::VisionTransformer> ema_model_;     // --model-ema: the averaged weights
  std::unique_ptr<nn::ModelEma> ema_;
  std::vector<Tensor> parameters_;
  MetricsWriter metrics_;

  TrainPosition position_;
  int64_t steps_per_epoch_ = 0, schedule_steps_ = 0, warmup_steps_ = 0, last_step_ = 0;
  double lr_ = 0;
  // Loss (and, with clipping, gradient norm and clip factor) of the steps since the last progress
  // line, summed on the device.
  Tensor running_loss_, running_grad_norm_, running_clip_factor_;
  int64_t running_steps_ = 0, running_images_ = 0;
  Clock::time_point start_, interval_start_;
  double paused_seconds_ = 0;      // evaluation and checkpoint time, left out of img/s
  int64_t trained_images_ = 0;
  int64_t last_eval_step_ = -1, last_save_step_ = -1;
  double final_test_acc_ = -1;
  std::vector<SavedBytes> saved_at_peak_;
  int64_t allocated_at_peak_ = 0;
  // --cuda-graphs on: the captured step, its static inputs and its loss output. The first
  // kEagerSteps steps of a run run eagerly (they create the optimizer state and the GEMM plans
  // outside the graph's pool, and take the memory report's walk).
  static constexpr int64_t kEagerSteps = 2;
  int64_t steps_this_run_ = 0;
#if TG_WITH_CUDA
  std::unique_ptr<CudaGraph> graph_;
  bool graph_failed_ = false;  // the capture failed: the run goes on eagerly
#endif
  Tensor graph_images_, graph_labels_;
  StepOutputs graph_outputs_;
  // The memory plan with its predicted peaks (nullopt where the model does not apply), and
  // whether the run stops after printing it (--plan-only, --find-max-batch).
  std::optional<RunPlan> plan_;
  bool planning_only_ = false;
  std::optional<AllocatedRatios> allocation_;  // --wta-allocation variance's ratios
};

void Trainer::setup() {
  out_ << "train_vit: configuration\n" << describe(o_);
  if (o_.cpu_recipe)
    out_ << "train_vit: no GPU in use: chose the CPU-sized run (" << o_.recipe_flags
         << "); give any of these flags to change it, or run on a GPU for the full recipe\n";
  // First, before anything touches a GPU: the NCCL join makes cuda:LOCAL_RANK current.
  if (o_.launch.distributed()) dp_ = std::make_unique<DataParallel>(o_, make_cuda_communicator_);
  // Dropout masks get a stream of their own (the model initialization draws from another); each
  // rank draws its own masks (rank_seed: rank 0's are the one-process run's).
  const uint64_t seed = rank_seed(o_.seed, o_.launch.rank);
  nn::dropout_generator().manual_seed(stream_seed(seed, kDropoutStream));
  default_generator().manual_seed(seed);

  data_ = load_data(o_);
  train_loader_ = std::make_unique<data::DataLoader>(data_.train, device_, data_.train_loader);
  test_loader_ = std::make_unique<data::DataLoader>(data_.test, device_, data_.test_loader);
  steps_per_epoch_ = train_loader_->batches_per_epoch();
  const std::optional<int64_t> schedule = checked_mul(o_.epochs, steps_per_epoch_);
  TG_CHECK(schedule, ValueError, "--epochs ", o_.epochs, " x ", steps_per_epoch_,
           " steps per epoch is more than 2^63 steps; expected a run that can end");
  schedule_steps_ = *schedule;
  // warmup_epochs is finite and at most epochs (validated), so this is at most schedule_steps_.
  warmup_steps_ = std::llround(o_.warmup_epochs * static_cast<double>(steps_per_epoch_));
  last_step_ = o_.max_steps > 0 ? std::min(o_.max_steps, schedule_steps_) : schedule_steps_;
  out_ << "data: " << data_.train.name << ", " << data_.train.size() << " training and " << data_.test.size()
       << " test images of " << data_.train.channels() << "x" << data_.train.height() << "x" << data_.train.width()
       << " in " << data_.train.num_classes << " classes; " << steps_per_epoch_ << " steps per epoch\n";

  plan_ = resolve_run_plan(o_, data_, out_);
  if (o_.plan_only || o_.find_max_batch) {
    planning_only_ = true;
    return;
  }
  const vit::MemoryPlan* chosen = plan_ && plan_->chosen ? &plan_->plan : nullptr;
  model_ = build_model(o_, data_.train.channels(), data_.train.num_classes, chosen);
  optimizer_ = make_optimizer(o_, *model_);
  if (o_.optimizer_in_backward) optimizer_->apply_in_backward();
  parameters_ = model_->parameters();
  if (o_.model_ema) {
    ema_model_ = build_model(o_, data_.train.channels(), data_.train.num_classes, chosen);
    ema_model_->eval();
    ema_ = std::make_unique<nn::ModelEma>(*ema_model_, *model_, o_.model_ema_decay);
  }
  nn::MixupConfig mix;
  mix.mixup_alpha = o_.mixup;
  mix.cutmix_alpha = o_.cutmix;
  mix.prob = o_.mixup_prob;
  mix.switch_prob = o_.mixup_switch_prob;
  if (mix.enabled()) mixup_.emplace(mix, o_.seed);
  out_ << "model: " << o_.model << ", depth " << model_->config().depth << ", dim " << model_->config().dim
       << ", " << model_->config().tokens() << " tokens, " << model_->num_parameters() << " parameters\n";
  if (!o_.save.empty() && writes_files()) check_free_space();
  const bool allocates = o_.wta_allocation == "variance";
  // The memory model covers such a run (validate_allocation), so resolve_run_plan made plan_.
  TG_INTERNAL_ASSERT(!allocates || plan_, "--wta-allocation variance without a memory plan");
  if (!o_.resume.empty()) {
    if (allocates) {
      const std::optional<AllocatedRatios> ratios = load_allocated_ratios(o_.resume);
      TG_CHECK(ratios, ValueError, "--resume ", o_.resume,
               ": the checkpoint holds no per-layer ratios, but the run has --wta-allocation variance (it was "
               "written by a run without it)");
      install_allocation(*ratios);
    }
    position_ = load_checkpoint(o_.resume, *model_, *optimizer_, o_, steps_per_epoch_, ema_model_.get());
    out_ << "resumed from " << o_.resume << " at epoch " << position_.epoch + 1 << ", step " << position_.step << "\n";
  } else if (!o_.init_from.empty()) {
    init_from_file();
  }
  if (allocates && o_.resume.empty())
    install_allocation(calibrate_allocation(o_, *model_, *train_loader_, *optimizer_, *plan_, out_));
  if (dp_) {
    dp_->share_parameters(*model_, *optimizer_, o_.resume.empty() ? std::nullopt : std::optional(position_.step));
    dp_->reduce_gradients(*model_);
  }
  // The EMA starts as the model (after --init-from); a resumed one was loaded above.
  if (ema_model_ && o_.resume.empty()) ema_model_->load_state_dict(model_->state_dict());
  if (!o_.metrics_out.empty() && writes_files())
    metrics_ = MetricsWriter(o_.metrics_out, /*append=*/!o_.resume.empty());
  nlohmann::json sampled = nlohmann::json::array();
  for (const vit::SampledSlot& slot : vit::sampled_slots(*model_))
    sampled.push_back({{"block", slot.block}, {"slot", slot.slot}, {"strategy", slot.strategy}});
  nlohmann::json config{{"type", "config"}, {"options", to_json(o_)}, {"sampled", sampled}};
  if (allocation_) config["wta_allocation"] = *allocation_;
  metrics_.write(config);
}

// --init-from, with --reset-head or with a check that the classifier fits the dataset, so that a
// class-count mismatch names the flag that resolves it.
void Trainer::init_from_file() {
  const int64_t classes = data_.train.num_classes;
  try {
    const nn::StateDict weights = nn::load_safetensors(o_.init_from).tensors;
    const auto head = weights.find("head.weight");
    const int64_t file_classes = head != weights.end() && head->second.dim() == 2 ? head->second.size(0) : -1;
    TG_CHECK(o_.reset_head || file_classes < 0 || file_classes == classes, ShapeError, "the file's classifier has ",
             file_classes, " classes (head.weight ", head->second.shape().str(), ") but --dataset ", o_.dataset,
             " has ", classes, "; pass --reset-head to load everything else and re-initialise the head");
    vit::load_weights(*model_, weights, o_.reset_head ? vit::HeadInit::reset : vit::HeadInit::load);
    if (o_.reset_head)
      out_ << "initialized the model from " << o_.init_from << " except the classifier: head reset for " << classes
           << " classes (the file's has " << file_classes << "), trunc_normal(0.02) weight and zero bias\n";
    else
      out_ << "initialized the model from " << o_.init_from << "\n";
  } catch (const Error& e) {
    rethrow_with_prefix(e, "--init-from '" + o_.init_from + "': ");
  }
}

void Trainer::install_allocation(const AllocatedRatios& ratios) {
  vit::MemoryPlan plan = plan_->plan;
  TG_CHECK(ratios.size() == plan.blocks.size(), ValueError, "per-layer ratios: expected ", plan.blocks.size(),
           " blocks (the model's depth), got ", ratios.size());
  for (size_t b = 0; b < ratios.size(); ++b) plan.blocks[b].ratio = ratios[b];
  vit::apply_plan(*model_, plan, strategy_config(o_));
  set_plan(*plan_, plan);  // the measured peak is compared with this plan's prediction
  allocation_ = ratios;
}

// A checkpoint needs the model and the optimizer's state once more next to the previous one;
// where the file system reports free space, too little of it stops the run before step 1.
void Trainer::check_free_space() {
  const nn::Optimizer& optimizer = *optimizer_;
  uint64_t bytes = 1 << 20;  // headers and the strategies' few scalars
  for (const auto& [_, tensor] : model_->state_dict()) bytes += tensor.nbytes();
  for (const auto& [_, tensor] : optimizer.state_dict()) bytes += tensor.nbytes();
  if (ema_model_)
    for (const auto& [_, tensor] : ema_model_->state_dict()) bytes += tensor.nbytes();
  std::error_code error;
  const std::filesystem::space_info space = std::filesystem::space(o_.save, error);
  if (error) return;  // unknown: the save itself reports a full disk
  TG_CHECK(space.available >= bytes, IoError, "--save ", o_.save, ": its file system has ", space.available,
           " bytes free, a checkpoint of this run needs about ", bytes);
}

Trainer::StepOutputs Trainer::step_body(const Tensor& images, const Tensor& labels) {
  Tensor loss, grad_norm, clip_factor;
  {
    // Mixed precision: the step's bf16 copies of the linears' weights in one pass, alive until
    // backward is done (ops/precision.h); the update below changes the f32 masters after.
    std::optional<AutocastWeightCache> weights;
    if (const std::optional<DType>& dtype = tg::precision_policy().autocast_dtype)
      weights.emplace(model_->autocast_weights(), *dtype);
    if (mixup_) {  // never under CUDA graphs (resolve_options): the mix is chosen on the host
      const nn::MixChoice mix = mixup_->choose(static_cast<uint64_t>(position_.step), images.size(2), images.size(3));
      loss = mixup_->loss(model_->forward(mixup_->mix_images(images, mix)), labels, mix, o_.label_smoothing);
    } else {
      loss = cross_entropy(model_->forward(images), labels, o_.label_smoothing);
    }
    // The graph holds every saved activation now: the first step's walk is the report's peak.
    if (o_.memory_report && saved_at_peak_.empty()) {
      saved_at_peak_ = saved_bytes_by_kind(loss);
      allocated_at_peak_ = memory_stats(device_).allocated_bytes[static_cast<size_t>(StatType::all)].current;
    }
    backward(loss);
    // Data parallel: the buckets' averages were launched from backward's hooks; clipping (on the
    // global gradient norm) and the update run after them.
    if (dp_) dp_->finish_backward();
  }
  if (!optimizer_->in_backward()) {  // else backward's hooks have updated every parameter
    if (o_.clip_grad > 0) grad_norm = nn::clip_grad_norm(parameters_, o_.clip_grad, &clip_factor);
    optimizer_->apply_step();
    optimizer_->zero_grad();
  }
  return {loss.detach(), grad_norm, clip_factor};
}

#if TG_WITH_CUDA
void Trainer::capture_step(const data::Batch& batch) {
  // The graph's inputs live outside its pool and outlive it; every step copies its batch in.
  graph_images_ = batch.images.clone();
  graph_labels_ = batch.labels.clone();
  graph_ = std::make_unique<CudaGraph>(device_);
  graph_->capture([&] { graph_outputs_ = step_body(graph_images_, graph_labels_); });
  out_ << "cuda graphs: captured the training step at step " << position_.step + 1 << "\n";
}
#endif

void Trainer::train_step() {
  const data::Batch batch = train_loader_->batch(position_.epoch, position_.batch);
  lr_ = nn::cosine_lr(position_.step, schedule_steps_, warmup_steps_, o_.lr);
  optimizer_->set_lr(lr_);
  optimizer_->prepare_step();
  StepOutputs step;
#if TG_WITH_CUDA
  if (o_.cuda_graphs == "on" && !graph_failed_ && steps_this_run_ >= kEagerSteps && !graph_) {
    try {
      capture_step(batch);
    } catch (const BackendError& e) {
      // Nothing captured ran: the step's kernels were discarded with the graph, so the step
      // runs eagerly below, as do the rest.
      graph_.reset();
      graph_failed_ = true;
      out_ << "cuda graphs: " << e.what() << "; the run continues without CUDA graphs\n";
    }
  }
  if (graph_) {
    graph_images_.copy_(batch.images);
    graph_labels_.copy_(batch.labels);
    graph_->replay();
    step = graph_outputs_;
  } else {
    step = step_body(batch.images, batch.labels);
  }
#else
  step = step_body(batch.images, batch.labels);
#endif
  // Data parallel: the host waits for this step's all-reduce (with the timeout) while the device
  // runs the update, so that no later host wait can hang on a rank that stopped answering.
  if (dp_) dp_->synchronize(detail::concat("the gradient all-reduce of step ", position_.step + 1));
  if (ema_) ema_->update();
  {
    NoGradGuard no_grad;
    auto sum_into = [](Tensor& running, const Tensor& value) {
      if (value.defined()) running = running.defined() ? add(running, value) : value.clone();
    };
    sum_into(running_loss_, step.loss);
    sum_into(running_grad_norm_, step.grad_norm);
    sum_into(running_clip_factor_, step.clip_factor);
  }
  running_steps_ += 1;
  running_images_ += batch.images.size(0);
  ++steps_this_run_;
  ++position_.batch;
  ++position_.step;
}

void Trainer::log_progress() {
  // Data parallel: the mean over the ranks' batches is the loss of the global batch; the gradient
  // norm and clip factor are the same on every rank (taken after the all-reduce).
  if (dp_) {
    dp_->average(running_loss_);
    dp_->synchronize(detail::concat("the loss average of step ", position_.step));
  }
  // The one host synchronization of the steps: reading the summed loss (the other sums were
  // complete before it).
  const double loss = running_loss_.item() / static_cast<double>(running_steps_);
  const double interval = std::max(seconds_since(interval_start_), 1e-9);
  running_images_ *= o_.launch.world_size;  // the whole job's images
  const double img_per_s = static_cast<double>(running_images_) / interval;
  const double eta = interval / static_cast<double>(running_steps_) * static_cast<double>(last_step_ - position_.step);
  TG_CHECK(std::isfinite(loss), ValueError, "training diverged: the mean loss of steps ",
           position_.step - running_steps_ + 1, "-", position_.step, " is ", loss,
           " (try a lower --lr or --clip-grad)");
  nlohmann::json record = memory_fields(device_);
  char line[256];
  std::snprintf(line, sizeof line, "epoch %lld/%lld  step %lld/%lld  loss %.4f  lr %.3e  %.0f img/s  ETA %s  mem %s (peak %s)\n",
                static_cast<long long>(position_.epoch + 1), static_cast<long long>(o_.epochs),
                static_cast<long long>(position_.step), static_cast<long long>(last_step_), loss, lr_, img_per_s,
                format_duration(eta).c_str(), format_bytes(record["allocated_bytes"].get<int64_t>()).c_str(),
                format_bytes(record["peak_allocated_bytes"].get<int64_t>()).c_str());
  out_ << line << std::flush;
  record.update({{"type", "train"}, {"epoch", position_.epoch + 1}, {"step", position_.step}, {"loss", loss},
                 {"lr", lr_}, {"img_per_s", img_per_s}, {"elapsed_s", seconds_since(start_)}});
  if (running_grad_norm_.defined()) {  // with clipping: the means over the logged steps
    const auto steps = static_cast<double>(running_steps_);
    record.update({{"grad_norm", running_grad_norm_.item() / steps}, {"clip_factor", running_clip_factor_.item() / steps}});
  }
  metrics_.write(record);
  trained_images_ += running_images_;
  running_loss_ = running_grad_norm_ = running_clip_factor_ = Tensor();
  running_steps_ = running_images_ = 0;
  interval_start_ = Clock::now();
}

void Trainer::evaluate() {
  const Clock::time_point begin = Clock::now();
  // With --model-ema the averaged weights are evaluated (that module stays in eval mode).
  const vit::VisionTransformer& evaluated = ema_model_ ? *ema_model_ : *model_;
  model_->eval();
  NoGradGuard no_grad;
  // Predictions and the loss stay on the device until the end: one synchronization in total. In
  // a data-parallel run each rank evaluates its block of the test set (data/shard.h) and the
  // counts are summed over the ranks.
  std::vector<Tensor> predictions, labels;
  Tensor loss_sum;
  for (int64_t i = 0; i < test_loader_->batches_per_epoch(); ++i) {
    const data::Batch batch = test_loader_->batch(0, i);
    const Tensor logits = evaluated.forward(batch.images);
    const Tensor loss = mul(cross_entropy(logits, batch.labels), static_cast<double>(batch.labels.size(0)));
    loss_sum = loss_sum.defined() ? add(loss_sum, loss) : loss;
    predictions.push_back(argmax(logits, 1));
    labels.push_back(batch.labels);
  }
  model_->train();
  const auto values = [](const std::vector<Tensor>& parts) {
    return parts.empty() ? std::vector<int64_t>() : concat(parts, 0).to_vector<int64_t>();
  };
  const std::vector<int64_t> predicted = values(predictions), truth = values(labels);
  int64_t correct = 0;
  for (size_t i = 0; i < truth.size(); ++i) correct += predicted[i] == truth[i];
  std::vector<double> sums = {static_cast<double>(correct), static_cast<double>(truth.size()),
                              loss_sum.defined() ? loss_sum.item() : 0.0};
  if (dp_) sums = dp_->sum(sums, detail::concat("the evaluation sums at step ", position_.step));
  const double count = sums[1];
  const double acc = 100.0 * sums[0] / count;
  const double test_loss = sums[2] / count;
  const double seconds = seconds_since(begin);
  paused_seconds_ += seconds;
  interval_start_ += Clock::now() - begin;
  final_test_acc_ = acc;
  position_.best_test_acc = std::max(position_.best_test_acc, acc);
  last_eval_step_ = position_.step;

  char line[200];
  std::snprintf(line, sizeof line,
                "epoch %lld/%lld  step %lld/%lld  test acc %.2f%%  test loss %.4f  (best %.2f%%, %s%s)\n",
                static_cast<long long>(epoch_label()), static_cast<long long>(o_.epochs),
                static_cast<long long>(position_.step), static_cast<long long>(last_step_), acc, test_loss,
                position_.best_test_acc, format_duration(seconds).c_str(), ema_model_ ? ", EMA weights" : "");
  out_ << line << std::flush;
  nlohmann::json record = memory_fields(device_);
  record.update({{"type", "eval"}, {"epoch", epoch_label()}, {"step", position_.step}, {"loss", test_loss},
                 {"test_acc", acc}, {"weights", ema_model_ ? "ema" : "model"}, {"lr", lr_},
                 {"img_per_s", count / std::max(seconds, 1e-9)}, {"elapsed_s", seconds_since(start_)}});
  metrics_.write(record);
}

void Trainer::save() {
  const Clock::time_point begin = Clock::now();
  last_save_step_ = position_.step;  // on every rank: the final save is a collective too
  // Data parallel: each rank's estimator state (the sampled strategies' proxies differ between
  // ranks) goes into rank 0's checkpoint.
  std::vector<std::map<std::string, Tensor>> rank_strategies;
  if (dp_) rank_strategies = dp_->gather_tensors(detail::concat("strategies at step ", position_.step), vit::strategy_state(*model_));
  if (writes_files()) {
    save_checkpoint(o_.save, *model_, *optimizer_, position_, o_, run_id_, ema_model_.get(), rank_strategies,
                    allocation_ ? &*allocation_ : nullptr);
    out_ << "saved checkpoint " << o_.save << " at step " << position_.step << "\n";
  }
  paused_seconds_ += seconds_since(begin);
  interval_start_ += Clock::now() - begin;
}

RunSummary Trainer::run() {
  setup();
  if (planning_only_) {
    if (dp_) dp_->finish();
    return RunSummary{};
  }
  reset_peak_memory_stats(device_);
  start_ = interval_start_ = Clock::now();
  const int64_t first_step = position_.step;
  bool stopped = false;
  while (position_.epoch < o_.epochs && !stopped) {
    while (position_.batch < steps_per_epoch_) {
      if (position_.step >= last_step_) {
        stopped = true;
        break;
      }
      train_step();
      // The measured peak against the prediction: after the first step of a fresh run (which
      // creates the optimizer state) and after the second (the state alive throughout).
      if (plan_ && (steps_this_run_ == 2 || (steps_this_run_ == 1 && o_.resume.empty())))
        out_ << format_measured_peak(*plan_, steps_this_run_,
                                     memory_stats(device_).allocated_bytes[static_cast<size_t>(StatType::all)].peak)
             << std::flush;
      if (position_.step % o_.log_every == 0 || position_.step == last_step_) log_progress();
      if (o_.eval_every > 0 && position_.step % o_.eval_every == 0 && position_.batch < steps_per_epoch_) evaluate();
    }
    if (stopped) break;
    evaluate();
    ++position_.epoch;
    position_.batch = 0;
    if (!o_.save.empty()) save();
  }
  if (last_eval_step_ != position_.step) evaluate();
  if (!o_.save.empty() && last_save_step_ != position_.step) save();

  const MemoryStats stats = memory_stats(device_);
  const auto all = static_cast<size_t>(StatType::all);
  RunSummary summary;
  summary.steps = position_.step;
  summary.final_test_acc = final_test_acc_;
  summary.best_test_acc = position_.best_test_acc;
  summary.peak_allocated_bytes = stats.allocated_bytes[all].peak;
  summary.peak_reserved_bytes = stats.reserved_bytes[all].peak;
  summary.wall_seconds = seconds_since(start_);
  const double train_seconds = std::max(summary.wall_seconds - paused_seconds_, 1e-9);
  summary.train_img_per_s = position_.step > first_step ? static_cast<double>(trained_images_) / train_seconds : 0;
  print_summary(summary);
  if (dp_) dp_->finish();
  return summary;
}

void Trainer::print_summary(const RunSummary& s) {
  if (o_.memory_report) {
    out_ << "\nmemory report (" << device_.str()
         << (dp_ ? detail::concat(", rank 0 of ", dp_->world_size()) : std::string()) << ")\n"
         << allocator_for(device_).memory_summary() << "\n";
    out_ << format_sampled_slots(vit::sampled_slots(*model_));
    if (plan_ && !saved_at_peak_.empty())  // the walk was taken in this run's first step
      out_ << format_kept_by_block(plan_->plan, o_.resume.empty() ? plan_->first_step : plan_->steady,
                                   allocated_at_peak_);
    if (!saved_at_peak_.empty()) out_ << format_saved_bytes(saved_at_peak_, allocated_at_peak_);
  }
  char line[400];
  std::snprintf(line, sizeof line,
                "\nsummary: best test acc %.2f%%, final test acc %.2f%% after %lld steps\n"
                "         peak allocated %s, peak reserved %s\n"
                "         time %s, %.0f training img/s\n",
                s.best_test_acc, s.final_test_acc, static_cast<long long>(s.steps),
                format_bytes(s.peak_allocated_bytes).c_str(), format_bytes(s.peak_reserved_bytes).c_str(),
                format_duration(s.wall_seconds).c_str(), s.train_img_per_s);
  out_ << line;
  if (dp_) {  // every rank's peaks, gathered on rank 0
    const auto peaks = dp_->gather("memory peaks", {s.peak_allocated_bytes, s.peak_reserved_bytes});
    for (size_t r = 0; r < peaks.size(); ++r)
      out_ << "         rank " << r << ": peak allocated " << format_bytes(peaks[r].at(0)) << ", peak reserved "
           << format_bytes(peaks[r].at(1)) << "\n";
  }
  out_ << std::flush;
}

}  // namespace

RunSummary run_training(const Options& options, std::ostream& out, const CommunicatorFactory& make_cuda_communicator) {
  // One policy for the whole run: forward and backward GEMMs and saved operands alike; the bf16
  // attention's kernels are a process-wide setting, set for the run here too.
  PrecisionGuard precision(precision_policy(options));
  set_cuda_attention_backend(parse_cuda_attention_backend(options.attention_backend));
  // Rank 0 alone prints; the other ranks' output goes nowhere (their errors reach stderr).
  std::ostream silent(nullptr);
  return Trainer(options, options.launch.rank == 0 ? out : silent, make_cuda_communicator).run();
}

}  // namespace tg::train
