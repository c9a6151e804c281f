// train_vit's configuration as output: the printout at the start of a run, the JSON of
// checkpoints and metrics, and which saved fields must agree for an exact continuation.
#include <sstream>

#include "apps/train_vit/options.h"

namespace tg::train {

namespace {

// A double as the command line would spell it ("0.001", "1e-05").
std::string num(double value) {
  std::ostringstream s;
  s << value;
  return s.str();
}

}  // namespace

std::string describe(const Options& o) {
  std::ostringstream s;
  auto line = [&](const char* key, const auto& value) { s << "  " << key << std::string(18 - std::string(key).size(), ' ') << value << "\n"; };
  auto or_none = [](const std::string& v) { return v.empty() ? std::string("-") : v; };
  line("dataset", o.dataset + (o.dataset == "synthetic" ? "" : " (" + data_directory(o) + ")"));
  line("augment", o.augment);
  line("train subset", o.train_subset > 0 ? std::to_string(o.train_subset) : "all");
  line("test subset", o.test_subset > 0 ? std::to_string(o.test_subset) : "all");
  line("model", o.model + ", depth " + std::to_string(model_depth(o)) + ", patch " + std::to_string(o.patch) + ", img " +
                    std::to_string(o.img));
  line("epochs", o.epochs);
  if (o.launch.distributed())
    line("batch size", std::to_string(o.batch_size) + " per rank, global " +
                           std::to_string(o.batch_size * o.launch.world_size) + " over " +
                           std::to_string(o.launch.world_size) + " ranks");
  else
    line("batch size", o.batch_size);
  line("optimizer", o.optimizer + ", lr " + num(o.lr) + ", weight decay " + num(o.weight_decay) +
                        (o.optimizer_in_backward ? ", applied in backward" : ""));
  line("schedule", "warm-up " + num(o.warmup_epochs) + " epochs, cosine to 0");
  line("label smoothing", o.label_smoothing);
  line("clip grad", o.clip_grad > 0 ? num(o.clip_grad) : "off");
  line("trivial augment", o.trivial_augment ? "on" : "off");
  line("mixup", o.mixup > 0 || o.cutmix > 0 ? "mixup alpha " + num(o.mixup) + ", cutmix alpha " + num(o.cutmix) +
                                                    ", prob " + num(o.mixup_prob) + ", switch prob " +
                                                    num(o.mixup_switch_prob)
                                              : std::string("off"));
  line("drop path", o.drop_path > 0 ? num(o.drop_path) + " (last block)" : "off");
  line("model ema", o.model_ema ? "decay " + num(o.model_ema_decay) : "off");
  if (o.backward == "exact") {
    line("backward", "exact");
  } else {
    std::string blocks;
    for (int64_t b : strategy_blocks(o)) {
      if (!blocks.empty()) blocks += ',';
      blocks += std::to_string(b);
    }
    line("backward", o.backward + ", ratio " + num(o.ratio) +
                         (o.wta_allocation == "variance"
                              ? ", as the memory of per-layer ratios by predicted variance (" +
                                    std::to_string(o.wta_allocation_batches) + " calibration batches)"
                              : ""));
    line("estimator", "proxy " + o.wta_proxy + (o.wta_proxy == "none" ? "" : " (beta " + num(o.wta_ema_beta) + ")") +
                          ", k min " + std::to_string(o.wta_k_min) + ", alpha " + num(o.wta_alpha));
    std::vector<std::string> targets;
    for (nn::MatmulTarget t : strategy_targets(o)) targets.push_back(nn::target_name(t));
    line("targets", join(targets, ","));
    line("blocks", o.wta_blocks == "all" ? "all (" + blocks + ")" : blocks);
  }
  line("device", o.resolved_device.str() + (o.device == "auto" ? " (auto)" : ""));
  line("recompute gelu", o.recompute_gelu ? "on" : "off");
  line("saved dtype", o.saved_dtype);
  line("precision", o.precision);
  line("attention", o.attention == "fused" ? "fused, backend " + o.attention_backend : o.attention);
  line("checkpoint blocks", o.checkpoint_blocks);
  line("recompute norms", o.recompute_norms ? "on" : "off");
  line("cuda graphs", o.cuda_graphs);
  line("seed", o.seed);
  line("max steps", o.max_steps > 0 ? std::to_string(o.max_steps) : "-");
  line("eval every", o.eval_every > 0 ? std::to_string(o.eval_every) + " steps and each epoch" : "each epoch");
  line("log every", std::to_string(o.log_every) + " steps");
  line("save", or_none(o.save));
  line("resume", or_none(o.resume));
  line("init from", or_none(o.init_from) + (o.reset_head ? ", head reset" : ""));
  line("metrics out", or_none(o.metrics_out));
  line("memory report", o.memory_report ? "on" : "off");
  if (!o.memory_budget.empty())
    line("memory budget", o.memory_budget + " = " + std::to_string(o.memory_budget_bytes) + " bytes" +
                              (o.no_sampling ? ", no sampling" : "") + (o.find_max_batch ? ", find max batch" : ""));
  if (o.plan_only) line("plan only", "on");
  if (o.launch.distributed())
    line("data parallel", "rank " + std::to_string(o.launch.rank) + " of " + std::to_string(o.launch.world_size) +
                              ", store at " + o.launch.master_addr + ":" + std::to_string(o.launch.master_port) +
                              ", timeout " + num(o.dist_timeout) + " s");
  return s.str();
}

nlohmann::json to_json(const Options& o) {
  return {{"dataset", o.dataset},       {"data_dir", data_directory(o)}, {"augment", o.augment},
          {"train_subset", o.train_subset}, {"test_subset", o.test_subset}, {"model", o.model},
          {"patch", o.patch},           {"img", o.img},                   {"depth", model_depth(o)},
          {"epochs", o.epochs},         {"batch_size", o.batch_size},     {"lr", o.lr},
          {"optimizer", o.optimizer},   {"weight_decay", o.weight_decay}, {"warmup_epochs", o.warmup_epochs},
          {"label_smoothing", o.label_smoothing}, {"clip_grad", o.clip_grad},
          {"optimizer_in_backward", o.optimizer_in_backward}, {"backward", o.backward},
          {"trivial_augment", o.trivial_augment}, {"mixup", o.mixup}, {"cutmix", o.cutmix},
          {"mixup_prob", o.mixup_prob}, {"mixup_switch_prob", o.mixup_switch_prob}, {"drop_path", o.drop_path},
          {"model_ema", o.model_ema}, {"model_ema_decay", o.model_ema_decay},
          {"ratio", o.ratio},           {"wta_targets", o.wta_targets},   {"wta_blocks", o.wta_blocks},
          {"wta_proxy", o.wta_proxy},   {"wta_ema_beta", o.wta_ema_beta}, {"wta_k_min", o.wta_k_min},
          {"wta_alpha", o.wta_alpha},   {"wta_allocation", o.wta_allocation},
          {"wta_allocation_batches", o.wta_allocation_batches}, {"recompute_gelu", o.recompute_gelu},
          {"saved_dtype", o.saved_dtype},
          {"device", o.resolved_device.str()}, {"precision", o.precision}, {"attention", o.attention},
          {"attention_backend", o.attention_backend}, {"checkpoint_blocks", o.checkpoint_blocks},
          {"recompute_norms", o.recompute_norms},
          {"cuda_graphs", o.cuda_graphs}, {"seed", o.seed},
          {"max_steps", o.max_steps},   {"eval_every", o.eval_every},     {"log_every", o.log_every},
          {"init_from", o.init_from},   {"reset_head", o.reset_head},
          {"world_size", o.launch.world_size}};
}

std::vector<std::string> trajectory_differences(const nlohmann::json& saved, const nlohmann::json& current) {
  // Everything that changes which batches are drawn, the model, the loss or the updates.
  static const char* const kFields[] = {"dataset",  "augment",   "train_subset",  "model",        "patch",
                                        "img",      "depth",     "epochs",        "batch_size",   "lr",
                                        "optimizer", "weight_decay", "warmup_epochs", "label_smoothing",
                                        "clip_grad", "backward", "ratio",         "wta_targets",  "wta_blocks",
                                        "recompute_gelu", "saved_dtype", "precision", "seed"};
  // Fields added later: a checkpoint written before them was trained with their defaults.
  static const char* const kAdded[] = {"trivial_augment",   "mixup",     "cutmix",    "mixup_prob",
                                       "mixup_switch_prob", "drop_path", "model_ema", "model_ema_decay",
                                       "wta_proxy",         "wta_ema_beta", "wta_k_min", "wta_alpha",
                                       "wta_allocation",    "wta_allocation_batches"};
  const nlohmann::json defaults = to_json(Options{});
  std::vector<std::pair<std::string, nlohmann::json>> fields;
  for (const char* field : kFields) fields.emplace_back(field, nlohmann::json());
  for (const char* field : kAdded) fields.emplace_back(field, defaults.at(field));
  // Checkpoints from before the fused attention were trained with the explicit one.
  fields.emplace_back("attention", "explicit");
  std::vector<std::string> differences;
  for (const auto& [field, missing] : fields) {
    const nlohmann::json a = saved.value(field, missing), b = current.value(field, missing);
    if (a != b) {
      std::string flag = std::string("--") + field;
      std::replace(flag.begin(), flag.end(), '_', '-');
      differences.push_back(flag + " " + a.dump() + " (checkpoint) vs " + b.dump() + " (this run)");
    }
  }
  return differences;
}

}  // namespace tg::train
