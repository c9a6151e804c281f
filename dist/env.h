// The launcher environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT as
// torchrun (and apps/launch) set them. A process with none of them set is a single-process run;
// a process with some of them set must have a consistent set, or parsing stops with a ValueError
// that names the variable, what it must be and what it holds (docs/distributed.md).
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace tg::dist {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;       // this process's GPU on its host (cuda:LOCAL_RANK)
  std::string master_addr;  // where rank 0's store listens; empty in a single-process run
  int master_port = 0;      // 0 in a single-process run

  bool distributed() const { return world_size > 1; }
};

// Looks a variable up: its value, or nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// Parses the launcher variables through `lookup`. ValueError (message: "launcher environment: "
// then the problem) for a value that is not a decimal integer in its range, RANK outside
// [0, WORLD_SIZE), a variable missing from a set that has WORLD_SIZE > 1, or RANK/LOCAL_RANK
// set without WORLD_SIZE.
LaunchEnv parse_launch_env(const EnvLookup& lookup);

// parse_launch_env on this process's environment (getenv).
LaunchEnv launch_env_from_process();

}  // namespace tg::dist
