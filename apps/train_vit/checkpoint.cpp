// Saving and restoring train_vit checkpoints.
#include "apps/train_vit/checkpoint.h"

#include <filesystem>

#include "apps/vit/strategies.h"
#include "core/rng.h"
#include "nn/layers.h"
#include "nn/safetensors.h"

namespace tg::train {

namespace fs = std::filesystem;

namespace {

const char* const kFormat = "tapegrad.train_vit.v1";
const char* const kStrategyPrefix = "backward_strategy.";

// The generators a training step can draw from: dropout masks and ops given no generator.
struct NamedGenerator {
  const char* name;
  Generator& generator;
};
std::vector<NamedGenerator> training_generators() {
  return {{"dropout_generator", nn::dropout_generator()}, {"default_generator", default_generator()}};
}

const std::string& metadata(const nn::SafetensorsFile& file, const std::string& path, const std::string& key) {
  auto it = file.metadata.find(key);
  TG_CHECK(it != file.metadata.end(), IoError, "'", path, "' has no metadata entry '", key,
           "' (not a checkpoint written by train_vit --save?)");
  return it->second;
}

int64_t metadata_int(const nn::SafetensorsFile& file, const std::string& path, const std::string& key) {
  const std::string& text = metadata(file, path, key);
  try {
    size_t used = 0;
    const long long value = std::stoll(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  TG_THROW(IoError, "'", path, "': metadata entry '", key, "' is '", text, "', expected an integer");
}

// Writes `path` through a temporary name, so that the previous file survives an interrupted write.
template <class Write>
void save_replacing(const fs::path& path, Write&& write) {
  const fs::path partial = path.string() + ".partial";
  write(partial.string());
  fs::rename(partial, path);
}

}  // namespace

void save_checkpoint(const std::string& dir, const vit::VisionTransformer& model, const nn::Optimizer& optimizer,
                     const TrainPosition& position, const Options& options) {
  std::error_code error;
  fs::create_directories(dir, error);
  TG_CHECK(!error, IoError, "--save: cannot create the folder '", dir, "': ", error.message());
  std::map<std::string, std::string> meta{
      {"format", kFormat},
      {"epoch", std::to_string(position.epoch)},
      {"batch", std::to_string(position.batch)},
      {"step", std::to_string(position.step)},
      // Round-trip precision, so that the resumed run's "best" line matches the straight run's.
      {"best_test_acc", nlohmann::json(position.best_test_acc).dump()},
      {"config", to_json(options).dump()}};
  for (const NamedGenerator& g : training_generators()) {
    meta[std::string(g.name) + ".seed"] = std::to_string(g.generator.seed());
    meta[std::string(g.name) + ".offset"] = std::to_string(g.generator.offset());
  }
  // The model first: a checkpoint whose train state is present always has matching weights.
  save_replacing(fs::path(dir) / "model.safetensors", [&](const std::string& path) { vit::save_weights(model, path); });
  // The optimizer's tensors, and the backward strategies' under kStrategyPrefix.
  std::map<std::string, Tensor> tensors = optimizer.state_dict();
  for (auto& [name, tensor] : vit::strategy_state(model)) tensors[kStrategyPrefix + name] = tensor;
  save_replacing(fs::path(dir) / "train_state.safetensors",
                 [&](const std::string& path) { nn::save_safetensors(path, tensors, meta); });
}

TrainPosition load_checkpoint(const std::string& dir, vit::VisionTransformer& model, nn::Optimizer& optimizer,
                              const Options& options) {
  const std::string state_path = (fs::path(dir) / "train_state.safetensors").string();
  const nn::SafetensorsFile state = nn::load_safetensors(state_path);
  TG_CHECK(metadata(state, state_path, "format") == kFormat, IoError, "'", state_path, "' has format '",
           metadata(state, state_path, "format"), "', expected '", kFormat, "'");
  nlohmann::json saved_config;
  try {
    saved_config = nlohmann::json::parse(metadata(state, state_path, "config"));
  } catch (const nlohmann::json::exception& e) {
    TG_THROW(IoError, "'", state_path, "': metadata entry 'config' is not valid JSON: ", e.what());
  }
  const std::vector<std::string> differences = trajectory_differences(saved_config, to_json(options));
  if (!differences.empty()) {
    std::string list;
    for (const std::string& d : differences) list += "\n  " + d;
    TG_THROW(ValueError, "--resume ", dir, ": the checkpoint was trained with a different configuration; pass the "
             "same flags to continue it exactly:", list);
  }

  vit::load_weights(model, (fs::path(dir) / "model.safetensors").string());
  optimizer.load_state_dict(state.tensors);
  std::map<std::string, Tensor> strategies;
  for (const auto& [name, tensor] : state.tensors)
    if (name.rfind(kStrategyPrefix, 0) == 0) strategies[name.substr(std::string(kStrategyPrefix).size())] = tensor;
  try {
    vit::load_strategy_state(model, strategies);
  } catch (const ValueError& e) {
    TG_THROW(IoError, "'", state_path, "': ", e.what());
  }
  for (const NamedGenerator& g : training_generators()) {
    g.generator.manual_seed(static_cast<uint64_t>(metadata_int(state, state_path, std::string(g.name) + ".seed")));
    g.generator.set_offset(static_cast<uint64_t>(metadata_int(state, state_path, std::string(g.name) + ".offset")));
  }
  TrainPosition position;
  position.epoch = metadata_int(state, state_path, "epoch");
  position.batch = metadata_int(state, state_path, "batch");
  position.step = metadata_int(state, state_path, "step");
  try {
    position.best_test_acc = nlohmann::json::parse(metadata(state, state_path, "best_test_acc")).get<double>();
  } catch (const nlohmann::json::exception& e) {
    TG_THROW(IoError, "'", state_path, "': metadata entry 'best_test_acc' is not a number: ", e.what());
  }
  TG_CHECK(position.step == optimizer.step_count(), IoError, "'", state_path, "': metadata step ", position.step,
           " differs from the optimizer's step ", optimizer.step_count());
  return position;
}

}  // namespace tg::train
