// Helpers of the data-parallel train_vit tests: the built train_vit and launch (also from a build
// folder carried to the GPU machine), a job of N ranks that apps/launch starts, flags as a shell
// fragment, and launcher variables set for a scope.
#pragma once

#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/apps/train_vit_fixture.h"
#include "tests/support/test_support.h"

#if !defined(TRAIN_VIT_EXE) || !defined(TRAIN_VIT_FROM_TEST) || !defined(LAUNCH_EXE) || !defined(LAUNCH_FROM_TEST)
#error "TRAIN_VIT_EXE, TRAIN_VIT_FROM_TEST, LAUNCH_EXE and LAUNCH_FROM_TEST (where they were built) must be defined"
#endif

namespace tg::test {

inline std::string train_vit_exe() { return built_executable(TRAIN_VIT_EXE, TRAIN_VIT_FROM_TEST); }
inline std::string launch_exe() { return built_executable(LAUNCH_EXE, LAUNCH_FROM_TEST); }

// `args` as one shell fragment, each quoted.
inline std::string shell_args(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) out += " '" + a + "'";
  return out;
}

// `command` (a shell fragment) as `nproc` ranks of a job on this host, rank 0's store at `port`.
inline ProcessResult launch_job(int nproc, int port, const std::string& command, const ScratchDir& dir) {
  return run_executable(launch_exe(),
                        "--nproc-per-node " + std::to_string(nproc) + " --master-port " + std::to_string(port) +
                            " --grace-seconds 2 -- " + command,
                        dir);
}

// train_vit with `args` as `nproc` ranks.
inline ProcessResult launch_train_vit(int nproc, int port, const std::vector<std::string>& args, const ScratchDir& dir) {
  return launch_job(nproc, port, "'" + train_vit_exe() + "'" + shell_args(args), dir);
}

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

}  // namespace tg::test
