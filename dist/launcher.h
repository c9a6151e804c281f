// The single-host launcher behind apps/launch (torchrun's --standalone role): starts
// nproc_per_node copies of a command, one per rank, each with the launcher environment set
// (RANK = LOCAL_RANK = its index, WORLD_SIZE = LOCAL_WORLD_SIZE = nproc_per_node, MASTER_ADDR,
// MASTER_PORT; NCCL_NVLS_ENABLE=0 unless already set), and supervises them:
//   - every rank runs in a process group of its own (so a rank's children are stopped with it)
//     and is killed if the launcher dies (PR_SET_PDEATHSIG);
//   - SIGINT, SIGTERM and SIGHUP sent to the launcher are forwarded to every rank;
//   - when a rank exits non-zero or is killed, the launcher says which, sends SIGTERM to the
//     other ranks, SIGKILL after `grace`, and returns 1;
//   - when every rank exits 0, it returns 0; after a forwarded signal, 128 + the signal.
// So a job ends within `grace` (plus reaping) of its first failing rank.
#pragma once

#include <chrono>
#include <iosfwd>
#include <string>
#include <vector>

namespace tg::dist {

struct LaunchConfig {
  int nproc_per_node = 1;
  std::vector<std::string> command;  // program (looked up in PATH) and its arguments
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;           // torchrun's default
  std::chrono::milliseconds grace{5000};
};

// Runs the job; progress and failures go to `log`, one line each, prefixed "launch: ".
// ValueError for a bad config. Blocks SIGCHLD, SIGINT, SIGTERM and SIGHUP in the calling thread
// while it runs: call it from a process whose other threads (if any) block them too.
int launch(const LaunchConfig& config, std::ostream& log);

}  // namespace tg::dist
