// Helpers of the train_vit tests: parsing a command line given as strings, reading JSON Lines,
// and the small CPU configuration the in-process runs use (scratch folders and running the
// built executable: tests/support/process.h).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>


#include <nlohmann/json.hpp>

#include "apps/train_vit/checkpoint.h"
#include "apps/train_vit/options.h"
#include "apps/train_vit/trainer.h"
#include "nn/safetensors.h"
#include "tests/support/process.h"

namespace tg::test {

// parse_command_line on {"train_vit", args...}.
inline train::Options parse_args(std::vector<std::string> args) {
  args.insert(args.begin(), "train_vit");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream help;
  return *train::parse_command_line(static_cast<int>(argv.size()), argv.data(), help);
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> records;
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  return records;
}

// The loss of every training record of a metrics file, in order.
inline std::vector<double> train_losses(const std::string& path) {
  std::vector<double> out;
  for (const nlohmann::json& r : read_jsonl(path))
    if (r["type"] == "train") out.push_back(r["loss"].get<double>());
  return out;
}

// A one-block ViT-Tiny on 256 Fashion-MNIST images at 28 px (8 steps of 32 per epoch): a run
// of a few seconds on one core.
inline std::vector<std::string> tiny_run_args() {
  return {"--device", "cpu", "--model", "vit-tiny", "--depth", "1", "--img", "28", "--patch", "7",
          "--train-subset", "256", "--test-subset", "200", "--batch-size", "32", "--epochs", "2",
          "--log-every", "1", "--warmup-epochs", "0.5"};
}

// Runs train_vit in-process with `args`; its printed output goes to *output when given.
inline train::RunSummary run(std::vector<std::string> args, std::string* output = nullptr) {
  std::ostringstream out;
  const train::RunSummary summary = train::run_training(parse_args(std::move(args)), out);
  if (output) *output = out.str();
  return summary;
}

inline std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// Sets the value of `flag` in `args` (which must hold it).
inline void set_flag(std::vector<std::string>& args, const std::string& flag, const std::string& value) {
  const auto at = std::find(args.begin(), args.end(), flag);
  REQUIRE(at != args.end());
  *(at + 1) = value;
}

// N steps straight equal N/2 steps + save + resume + N/2 steps, bit for bit (losses, model and
// optimizer state), for the run `base` describes (CPU or CUDA). Uses doctest's checks.
inline void check_bitwise_resume(const std::vector<std::string>& base) {
  constexpr int kSteps = 12;  // two epochs of 8 steps: the run stops in the second
  ScratchDir dir("train_vit_resume");
  run(with(base, {"--max-steps", std::to_string(kSteps), "--save", dir / "straight", "--metrics-out",
                  dir / "straight.jsonl"}));
  const std::vector<double> straight = train_losses(dir / "straight.jsonl");
  REQUIRE(straight.size() == kSteps);
  const train::CheckpointFiles straight_files = train::checkpoint_files(dir / "straight");
  const nn::SafetensorsFile straight_state = nn::load_safetensors(straight_files.train_state);

  // Split mid-epoch (6) and at the epoch boundary (8).
  for (const int split : {6, 8}) {
    CAPTURE(split);
    const std::string ckpt = dir / ("split" + std::to_string(split)), metrics = ckpt + ".jsonl";
    run(with(base, {"--max-steps", std::to_string(split), "--save", ckpt, "--metrics-out", metrics}));
    const train::RunSummary resumed =
        run(with(base, {"--max-steps", std::to_string(kSteps), "--resume", ckpt, "--save", ckpt, "--metrics-out", metrics}));
    CHECK(resumed.steps == kSteps);
    const std::vector<double> split_losses = train_losses(metrics);
    REQUIRE(split_losses.size() == kSteps);
    for (int i = 0; i < kSteps; ++i) {
      CAPTURE(i);
      CHECK(split_losses[static_cast<size_t>(i)] == straight[static_cast<size_t>(i)]);
    }
    // The same weights; the files differ only in their checkpoint ids.
    const nn::SafetensorsFile model = nn::load_safetensors(train::checkpoint_files(ckpt).model);
    const nn::SafetensorsFile straight_model = nn::load_safetensors(straight_files.model);
    REQUIRE(model.tensors.size() == straight_model.tensors.size());
    for (const auto& [name, tensor] : straight_model.tensors) {
      CAPTURE(name);
      REQUIRE(model.tensors.at(name).nbytes() == tensor.nbytes());
      CHECK(std::memcmp(model.tensors.at(name).raw_data(), tensor.raw_data(), tensor.nbytes()) == 0);
    }
    const nn::SafetensorsFile state = nn::load_safetensors(train::checkpoint_files(ckpt).train_state);
    REQUIRE(state.tensors.size() == straight_state.tensors.size());
    for (const auto& [name, tensor] : straight_state.tensors) {
      CAPTURE(name);
      const Tensor& other = state.tensors.at(name);
      REQUIRE(other.nbytes() == tensor.nbytes());
      CHECK(std::memcmp(other.raw_data(), tensor.raw_data(), tensor.nbytes()) == 0);
    }
    CHECK(state.metadata.at("step") == std::to_string(kSteps));
    // Splitting mid-epoch adds an evaluation at the split, which may become the best.
    if (split == 8) CHECK(state.metadata.at("best_test_acc") == straight_state.metadata.at("best_test_acc"));
  }

  // A different trajectory is refused, naming the flag.
  std::string message;
  try {
    run(with(base, {"--lr", "0.002", "--resume", dir / "straight"}));
  } catch (const ValueError& e) {
    message = e.what();
  }
  CHECK(message.find("the checkpoint was trained with a different configuration") != std::string::npos);
  CHECK(message.find("--lr 0.001 (checkpoint) vs 0.002 (this run)") != std::string::npos);
}

}  // namespace tg::test
