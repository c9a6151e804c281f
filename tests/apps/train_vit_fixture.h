// Helpers of the train_vit tests: parsing a command line given as strings, a scratch folder,
// reading JSON Lines, and the small CPU configuration the in-process runs use.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "apps/train_vit/options.h"

namespace tg::test {

// parse_command_line on {"train_vit", args...}.
inline train::Options parse_args(std::vector<std::string> args) {
  args.insert(args.begin(), "train_vit");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream help;
  return *train::parse_command_line(static_cast<int>(argv.size()), argv.data(), help);
}

// A fresh folder under the system temp dir, removed with the object.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() / ("tapegrad_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> records;
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  return records;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A one-block ViT-Tiny on 256 Fashion-MNIST images at 28 px (8 steps of 32 per epoch): a run
// of a few seconds on one core.
inline std::vector<std::string> tiny_run_args() {
  return {"--device", "cpu", "--model", "vit-tiny", "--depth", "1", "--img", "28", "--patch", "7",
          "--train-subset", "256", "--test-subset", "200", "--batch-size", "32", "--epochs", "2",
          "--log-every", "1", "--warmup-epochs", "0.5"};
}

}  // namespace tg::test
