// The built train_vit under a launcher environment: malformed variables and WORLD_SIZE > 1 stop
// it before any work with exit code 2 and one message (data parallelism unavailable without
// NCCL; not wired into the trainer yet with it). docs/distributed.md, "train_vit today".
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <optional>

#include "dist/data_parallel.h"
#include "tests/apps/train_vit_fixture.h"

#ifndef TRAIN_VIT_EXE
#error "TRAIN_VIT_EXE (the path of the built train_vit) must be defined"
#endif

using namespace tg;

namespace {

// Sets environment variables for its lifetime and restores what was there before.
class EnvGuard {
 public:
  explicit EnvGuard(const std::map<std::string, std::string>& vars) {
    for (const auto& [name, value] : vars) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      ::setenv(name.c_str(), value.c_str(), 1);
    }
  }
  ~EnvGuard() {
    for (const auto& [name, value] : saved_)
      value ? ::setenv(name.c_str(), value->c_str(), 1) : ::unsetenv(name.c_str());
  }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

const std::map<std::string, std::string> kTwoRanks = {
    {"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}};

}  // namespace

TEST_CASE("train_vit refuses WORLD_SIZE > 1 before any work, saying why") {
  test::ScratchDir dir("train_vit_dist_cli");
  const EnvGuard env(kTwoRanks);
  const test::ProcessResult r = test::run_executable(TRAIN_VIT_EXE, "--device cpu --max-steps 1", dir);
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  if (dist::data_parallel_available()) {
    CHECK(r.err ==
          "train_vit: error: data-parallel training is not wired into train_vit's trainer yet (launcher environment: "
          "rank 1 of 2); run one process without WORLD_SIZE, or see docs/distributed.md\n");
  } else {
    CHECK(r.err ==
          "train_vit: error: data parallelism is unavailable: the launcher environment asks for WORLD_SIZE=2 ranks, "
          "but this build of tapegrad has no NCCL; configure with the CUDA backend and -DTAPEGRAD_NCCL=ON (nccl.h and "
          "libnccl under /usr/local/cuda, or -DTAPEGRAD_NCCL_ROOT=DIR)\n");
  }
}

TEST_CASE("train_vit refuses a malformed launcher environment with the variable's message") {
  test::ScratchDir dir("train_vit_dist_cli_bad");
  auto vars = kTwoRanks;
  vars["MASTER_PORT"] = "http";
  const EnvGuard env(vars);
  const test::ProcessResult r = test::run_executable(TRAIN_VIT_EXE, "--device cpu --max-steps 1", dir);
  CHECK(r.exit_code == 2);
  CHECK(r.err == "train_vit: error: launcher environment: MASTER_PORT must be an integer in [1, 65535], got 'http'\n");
}
