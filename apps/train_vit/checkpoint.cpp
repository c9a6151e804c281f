// Saving, publishing and restoring train_vit checkpoints (Note [checkpoint publication] in
// checkpoint.h).
#include "apps/train_vit/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "apps/vit/strategies.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "nn/bounded_json.h"
#include "nn/layers.h"
#include "nn/safetensors.h"

namespace tg::train {

namespace fs = std::filesystem;

namespace {

const char* const kFormat = "tapegrad.train_vit.v2";
const char* const kStrategyPrefix = "backward_strategy.";
const char* const kEmaPrefix = "model_ema.";  // --model-ema's weights
const char* const kRankPrefix = "rank";       // "rank<r>.": rank r's strategy state (r >= 1)
const char* const kAllocationKey = "wta_allocation";  // metadata: --wta-allocation variance's ratios
const char* const kModelFile = "model.safetensors";
const char* const kStateFile = "train_state.safetensors";
const char* const kVersionPrefix = "step-";  // version folders: step-<12 digits>-<16 hex digits>
const char* const kTempPrefix = ".tmp-";
const char* const kLatestTempPrefix = ".latest.tmp-";

std::function<void(const std::string&)>& fault_hook() {
  static std::function<void(const std::string&)> hook;
  return hook;
}
void completed(const std::string& point) {
  if (fault_hook()) fault_hook()(point);
}

bool is_version_name(const std::string& name) {
  if (name.size() != 5 + 12 + 1 + 16 || name.rfind(kVersionPrefix, 0) != 0 || name[17] != '-') return false;
  for (size_t i = 5; i < name.size(); ++i)
    if (i != 17 && !std::isxdigit(static_cast<unsigned char>(name[i]))) return false;
  return true;
}

std::string checkpoint_id(int64_t step, const std::string& run_id) {
  char text[64];
  std::snprintf(text, sizeof text, "%s%012lld-%s", kVersionPrefix, static_cast<long long>(step), run_id.c_str());
  return text;
}


const std::string& metadata(const nn::SafetensorsFile& file, const std::string& path, const std::string& key) {
  auto it = file.metadata.find(key);
  TG_CHECK(it != file.metadata.end(), IoError, "'", path, "' has no metadata entry '", key,
           "' (not a checkpoint written by this train_vit --save?)");
  return it->second;
}

// A metadata integer in [lo, hi]; IoError naming the file, the key, the range and the value.
int64_t metadata_int(const nn::SafetensorsFile& file, const std::string& path, const std::string& key, int64_t lo,
                     int64_t hi, const std::string& why = "") {
  const std::string& text = metadata(file, path, key);
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  TG_CHECK(!text.empty() && end == text.c_str() + text.size() && errno == 0, IoError, "'", path,
           "': metadata entry '", key, "' is '", text, "', expected an integer");
  TG_CHECK(value >= lo && value <= hi, IoError, "'", path, "': metadata ", key, " ", value, " is out of range [", lo,
           ", ", hi, "]", why);
  return value;
}

uint64_t metadata_u64(const nn::SafetensorsFile& file, const std::string& path, const std::string& key) {
  const std::string& text = metadata(file, path, key);
  errno = 0;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  TG_CHECK(!text.empty() && text[0] != '-' && end == text.c_str() + text.size() && errno == 0, IoError, "'", path,
           "': metadata entry '", key, "' is '", text, "', expected an unsigned 64-bit integer");
  return value;
}

// Writes `text` to `path` and fsyncs it (the caller renames it into place).
void write_text_synced(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TG_CHECK(fd >= 0, IoError, "--save: cannot create '", path, "': ", std::strerror(errno));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  const int code = errno;
  ::close(fd);
  TG_CHECK(ok, IoError, "--save: cannot write '", path, "': ", std::strerror(code));
}

void rename_or_throw(const fs::path& from, const fs::path& to) {
  std::error_code error;
  fs::rename(from, to, error);
  TG_CHECK(!error, IoError, "--save: cannot rename '", from.string(), "' to '", to.string(), "': ", error.message());
}

// Removes version folders other than `keep` and leftovers of interrupted saves.
void prune(const fs::path& dir, const std::string& keep) {
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    const bool stale = (is_version_name(name) && name != keep) || name.rfind(kTempPrefix, 0) == 0 ||
                       name.rfind(kLatestTempPrefix, 0) == 0;
    if (stale) fs::remove_all(entry.path(), error);  // best effort: the next save tries again
  }
}

// The rank of a "rank<r>.backward_strategy.<name>" key and, in `rest`, <name>; -1 for other keys.
int strategy_rank(const std::string& key, std::string& rest) {
  size_t at = std::string(kRankPrefix).size();
  if (key.rfind(kRankPrefix, 0) != 0 || at >= key.size() || !std::isdigit(static_cast<unsigned char>(key[at]))) return -1;
  int rank = 0;
  for (; at < key.size() && std::isdigit(static_cast<unsigned char>(key[at])) && rank < 1'000'000; ++at)
    rank = rank * 10 + (key[at] - '0');
  const std::string tail = key.substr(at);
  const std::string prefix = std::string(".") + kStrategyPrefix;
  if (tail.rfind(prefix, 0) != 0) return -1;
  rest = tail.substr(prefix.size());
  return rank;
}

// Runs `load` and puts the file's name before any tg::Error it throws.
template <class Load>
void naming_file(const std::string& path, Load&& load) {
  try {
    load();
  } catch (const Error& e) {
    rethrow_with_prefix(e, "'" + path + "': ");
  }
}

}  // namespace

std::string new_run_id() {
  std::random_device device;
  const uint64_t id = (uint64_t{device()} << 32) ^ device();
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(id));
  return text;
}

void check_save_dir(const std::string& dir) {
  std::error_code error;
  TG_CHECK(!fs::exists(dir, error) || fs::is_directory(dir, error), ValueError, "--save ", dir,
           ": it exists and is not a folder (expected a folder for the checkpoints)");
  fs::create_directories(dir, error);
  TG_CHECK(!error, ValueError, "--save ", dir, ": cannot create the folder: ", error.message());
  const std::string probe = (fs::path(dir) / (kTempPrefix + std::string("probe-") + new_run_id())).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  TG_CHECK(fd >= 0, ValueError, "--save ", dir, ": cannot write into the folder: ", std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

CheckpointFiles checkpoint_files(const std::string& dir) {
  const fs::path root(dir), latest = root / "latest";
  fs::path version = root;
  if (fs::exists(latest)) {
    const std::vector<uint8_t> bytes = read_file_bytes(latest.string());
    std::string name(bytes.begin(), bytes.end());
    while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
    TG_CHECK(is_version_name(name), IoError, "'", latest.string(), "' holds '", name.substr(0, 64),
             "', expected the name of a version folder (step-<step>-<run id>)");
    version = root / name;
    TG_CHECK(fs::is_directory(version), IoError, "'", latest.string(), "' names '", name,
             "', but that folder does not exist (the checkpoint was moved or deleted in part)");
  } else {
    TG_CHECK(fs::exists(root / kModelFile) || fs::exists(root / kStateFile), IoError, "--resume ", dir,
             ": no checkpoint there (expected ", latest.string(), ", written by --save, or a version folder with ",
             kModelFile, " and ", kStateFile, ")");
  }
  return {(version / kModelFile).string(), (version / kStateFile).string()};
}

std::vector<NamedGenerator> training_generators() {
  return {{"dropout_generator", nn::dropout_generator()}, {"default_generator", default_generator()}};
}

std::optional<AllocatedRatios> load_allocated_ratios(const std::string& dir) {
  const std::string path = checkpoint_files(dir).train_state;
  const nn::SafetensorsFile state = nn::load_safetensors(path);
  const auto entry = state.metadata.find(kAllocationKey);
  if (entry == state.metadata.end()) return std::nullopt;
  try {
    return nlohmann::json::parse(entry->second).get<AllocatedRatios>();
  } catch (const nlohmann::json::exception&) {
    TG_THROW(IoError, "'", path, "': metadata ", kAllocationKey, " is '", entry->second.substr(0, 64),
             "', expected per block a list of four ratios");
  }
}

void save_checkpoint(const std::string& dir, const vit::VisionTransformer& model, const nn::Optimizer& optimizer,
                     const TrainPosition& position, const Options& options, const std::string& run_id,
                     const vit::VisionTransformer* ema, const std::vector<std::map<std::string, Tensor>>& rank_strategies,
                     const AllocatedRatios* allocation) {
  const fs::path root(dir);
  std::error_code error;
  fs::create_directories(root, error);
  TG_CHECK(!error, IoError, "--save: cannot create the folder '", dir, "': ", error.message());
  const std::string id = checkpoint_id(position.step, run_id);
  std::map<std::string, std::string> meta{
      {"format", kFormat},
      {"checkpoint_id", id},
      {"epoch", std::to_string(position.epoch)},
      {"batch", std::to_string(position.batch)},
      {"step", std::to_string(position.step)},
      // Round-trip precision, so that the resumed run's "best" line matches the straight run's.
      {"best_test_acc", nlohmann::json(position.best_test_acc).dump()},
      {"config", to_json(options).dump()}};
  if (allocation) meta[kAllocationKey] = nlohmann::json(*allocation).dump();
  for (const NamedGenerator& g : training_generators()) {
    meta[std::string(g.name) + ".seed"] = std::to_string(g.generator.seed());
    meta[std::string(g.name) + ".offset"] = std::to_string(g.generator.offset());
  }
  // The optimizer's tensors, and the backward strategies' under kStrategyPrefix.
  std::map<std::string, Tensor> tensors = optimizer.state_dict();
  for (auto& [name, tensor] : vit::strategy_state(model)) tensors[kStrategyPrefix + name] = tensor;
  if (ema)
    for (auto& [name, tensor] : ema->state_dict()) tensors[kEmaPrefix + name] = tensor;
  for (size_t r = 1; r < rank_strategies.size(); ++r)
    for (auto& [name, tensor] : rank_strategies[r])
      tensors[kRankPrefix + std::to_string(r) + "." + kStrategyPrefix + name] = tensor;

  const fs::path temp = root / (kTempPrefix + id), version = root / id;
  fs::remove_all(temp, error);
  fs::create_directory(temp, error);
  TG_CHECK(!error, IoError, "--save: cannot create the folder '", temp.string(), "': ", error.message());
  // "format": "pt" is what safetensors.torch writes (vit::save_weights writes the same file).
  nn::save_safetensors((temp / kModelFile).string(), model.state_dict(), {{"format", "pt"}, {"checkpoint_id", id}});
  completed("write model.safetensors");
  fsync_path((temp / kModelFile).string());
  completed("fsync model.safetensors");
  nn::save_safetensors((temp / kStateFile).string(), tensors, meta);
  completed("write train_state.safetensors");
  fsync_path((temp / kStateFile).string());
  completed("fsync train_state.safetensors");
  fsync_path(temp.string());
  completed("fsync the temporary folder");
  fs::remove_all(version, error);  // a save at the same step of the same run (only on a retry)
  rename_or_throw(temp, version);
  completed("rename the temporary folder");
  fsync_path(root.string());
  completed("fsync the checkpoint folder");
  const fs::path latest_temp = root / (kLatestTempPrefix + id);
  write_text_synced(latest_temp.string(), id + "\n");
  completed("write and fsync latest");
  rename_or_throw(latest_temp, root / "latest");
  completed("rename latest");
  fsync_path(root.string());
  completed("fsync the checkpoint folder again");
  prune(root, id);
  completed("remove older checkpoints");
}

TrainPosition load_checkpoint(const std::string& dir, vit::VisionTransformer& model, nn::Optimizer& optimizer,
                              const Options& options, int64_t steps_per_epoch, vit::VisionTransformer* ema) {
  const CheckpointFiles files = checkpoint_files(dir);
  const nn::SafetensorsFile state = nn::load_safetensors(files.train_state);
  const std::string& state_path = files.train_state;
  TG_CHECK(metadata(state, state_path, "format") == kFormat, IoError, "'", state_path, "' has format '",
           metadata(state, state_path, "format"), "', expected '", kFormat, "'");
  const nlohmann::json saved_config =
      nn::parse_bounded_json(metadata(state, state_path, "config"), "'" + state_path + "': metadata entry 'config'");
  TG_CHECK(saved_config.is_object(), IoError, "'", state_path, "': metadata entry 'config' is ",
           saved_config.type_name(), ", expected a JSON object");
  // Checkpoints from before data parallelism were written by one process.
  const nlohmann::json saved_world = saved_config.value("world_size", nlohmann::json(1));
  const int world = options.launch.world_size;
  TG_CHECK(saved_world == world, ValueError, "--resume ", dir, ": the checkpoint was written by a run of ",
           saved_world.dump(), " rank(s) and this run has ", world, " (WORLD_SIZE); the global batch (--batch-size x "
           "world size) and the samples each rank reads at each step depend on it, so resume with WORLD_SIZE=",
           saved_world.dump(), saved_world == 1 ? " (or without a launcher)" : "");
  const std::vector<std::string> differences = trajectory_differences(saved_config, to_json(options));
  if (!differences.empty()) {
    std::string list;
    for (const std::string& d : differences) list += "\n  " + d;
    TG_THROW(ValueError, "--resume ", dir, ": the checkpoint was trained with a different configuration; pass the "
             "same flags to continue it exactly:", list);
  }

  const nn::SafetensorsFile weights = nn::load_safetensors(files.model);
  const std::string& state_id = metadata(state, state_path, "checkpoint_id");
  const auto model_id = weights.metadata.find("checkpoint_id");
  TG_CHECK(model_id != weights.metadata.end() && model_id->second == state_id, IoError, "'", files.model,
           "' (checkpoint ", model_id == weights.metadata.end() ? std::string("id missing") : model_id->second,
           ") and '", state_path, "' (checkpoint ", state_id,
           ") are not one checkpoint (a torn save or files mixed by hand); resume from a complete checkpoint");

  // Position first: nothing is restored from a checkpoint whose position is out of range.
  const int64_t epochs = options.epochs;
  TrainPosition position;
  position.epoch = metadata_int(state, state_path, "epoch", 0, epochs, detail::concat(" (--epochs ", epochs, ")"));
  const int64_t last_batch = position.epoch == epochs ? 0 : std::max<int64_t>(steps_per_epoch - 1, 0);
  position.batch = metadata_int(state, state_path, "batch", 0, last_batch,
                                detail::concat(" (", steps_per_epoch, " steps per epoch, epoch ", position.epoch, ")"));
  const int64_t expected_step = position.epoch * steps_per_epoch + position.batch;  // both in range: no overflow
  position.step = metadata_int(state, state_path, "step", expected_step, expected_step,
                               detail::concat(" (epoch ", position.epoch, " x ", steps_per_epoch, " steps + batch ",
                                              position.batch, ")"));
  const nlohmann::json best =
      nn::parse_bounded_json(metadata(state, state_path, "best_test_acc"), "'" + state_path + "': metadata entry 'best_test_acc'");
  TG_CHECK(best.is_number() && (best.get<double>() == -1 || (best.get<double>() >= 0 && best.get<double>() <= 100)),
           IoError, "'", state_path, "': metadata best_test_acc is ", best.dump(), ", expected -1 or a percentage");
  position.best_test_acc = best.get<double>();
  std::vector<std::pair<uint64_t, uint64_t>> generator_states;
  for (const NamedGenerator& g : training_generators())
    generator_states.emplace_back(metadata_u64(state, state_path, std::string(g.name) + ".seed"),
                                  metadata_u64(state, state_path, std::string(g.name) + ".offset"));

  naming_file(files.model, [&] { model.load_state_dict(weights.tensors, /*strict=*/true); });
  std::map<std::string, Tensor> optimizer_state, strategies, own_strategies, averaged;
  const int rank = options.launch.rank;
  for (const auto& [name, tensor] : state.tensors) {
    std::string rest;
    if (const int owner = strategy_rank(name, rest); owner >= 0) {
      if (owner == rank) own_strategies[rest] = tensor;
    } else if (name.rfind(kStrategyPrefix, 0) == 0) strategies[name.substr(std::string(kStrategyPrefix).size())] = tensor;
    else if (name.rfind(kEmaPrefix, 0) == 0) averaged[name.substr(std::string(kEmaPrefix).size())] = tensor;
    else optimizer_state[name] = tensor;
  }
  // The configuration matched, so --model-ema did too; strict load of what it saved.
  TG_CHECK(ema || averaged.empty(), IoError, "'", state_path, "' holds ", averaged.size(),
           " model_ema.* tensors, but the run has no --model-ema");
  if (ema) naming_file(state_path, [&] { ema->load_state_dict(averaged, /*strict=*/true); });
  naming_file(state_path, [&] { optimizer.load_state_dict(optimizer_state); });
  // Rank r >= 1 of a data-parallel run continues its own estimators where the checkpoint has them.
  naming_file(state_path, [&] { vit::load_strategy_state(model, own_strategies.empty() ? strategies : own_strategies); });
  TG_CHECK(position.step == optimizer.step_count(), IoError, "'", state_path, "': metadata step ", position.step,
           " differs from the optimizer's step ", optimizer.step_count());
  for (size_t i = 0; i < generator_states.size(); ++i) {
    Generator& generator = training_generators()[i].generator;
    // Rank 0 wrote its own generators. The other ranks of a data-parallel run keep the seeds of
    // their own streams (rank_seed, set at the start) and take the offsets, which advance alike on
    // every rank (the same shapes at every step).
    if (options.launch.rank == 0) generator.manual_seed(generator_states[i].first);
    generator.set_offset(generator_states[i].second);
  }
  return position;
}

namespace testing {
void set_checkpoint_fault_hook(std::function<void(const std::string& point)> hook) { fault_hook() = std::move(hook); }
}  // namespace testing

}  // namespace tg::train
