// train_vit: trains a Vision Transformer on an image dataset with exact or sampled (WTA-CRS)
// matmul backward and reports accuracy, speed and memory. Flags: train_vit --help and
// docs/train_vit.md. Under a launcher (RANK, WORLD_SIZE, ... as torchrun or apps/launch set
// them) each process is one rank of a data-parallel job: docs/distributed.md. Exit codes: 0
// success, 2 usage error (bad flag, value or combination, or launcher environment; found before
// any work), 1 runtime error (missing or corrupt data, I/O, divergence, a rank that stopped
// answering, ...). A rank's errors name the rank.
#include <exception>
#include <iostream>

#include "apps/train_vit/options.h"
#include "apps/train_vit/trainer.h"
#include "core/error.h"
#if TG_WITH_NCCL
#include "dist/cuda/nccl_stream_communicator.h"
#endif

int main(int argc, char** argv) {
  tg::train::Options options;
  std::string prefix = "train_vit: error: ";
  try {
    const tg::dist::LaunchEnv env = tg::dist::launch_env_from_process();
    if (env.distributed()) prefix = tg::detail::concat("train_vit: rank ", env.rank, " of ", env.world_size, ": error: ");
    const auto parsed = tg::train::parse_command_line(argc, argv, std::cout, env);
    if (!parsed) return 0;  // --help
    options = *parsed;
  } catch (const tg::Error& e) {
    std::cerr << prefix << e.what() << "\n";
    return 2;
  }
  try {
#if TG_WITH_NCCL
    tg::train::run_training(options, std::cout, tg::dist::open_nccl_communicator);
#else
    tg::train::run_training(options, std::cout);
#endif
  } catch (const std::exception& e) {
    std::cout << std::flush;
    std::cerr << prefix << e.what() << "\n";
    return 1;
  }
  return 0;
}
