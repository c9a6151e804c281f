// train_vit: trains a Vision Transformer on an image dataset with exact or sampled (WTA-CRS)
// matmul backward and reports accuracy, speed and memory. Flags: train_vit --help and
// docs/train_vit.md. Exit codes: 0 success, 2 usage error (bad flag, value or combination, or a
// launcher environment asking for several ranks: docs/distributed.md; found before any work),
// 1 runtime error (missing or corrupt data, I/O, divergence, ...).
#include <exception>
#include <iostream>

#include "apps/train_vit/options.h"
#include "apps/train_vit/trainer.h"
#include "core/error.h"
#include "dist/data_parallel.h"

int main(int argc, char** argv) {
  tg::train::Options options;
  try {
    const auto parsed = tg::train::parse_command_line(argc, argv, std::cout);
    if (!parsed) return 0;  // --help
    options = *parsed;
    // Several ranks from a launcher: refused until the trainer runs data parallel, rather than N
    // unaware copies writing the same checkpoints (docs/distributed.md).
    const tg::dist::LaunchEnv env = tg::dist::launch_env_from_process();
    tg::dist::require_data_parallel(env);
    TG_CHECK(!env.distributed(), NotImplementedError,
             "data-parallel training is not wired into train_vit's trainer yet (launcher environment: rank ", env.rank,
             " of ", env.world_size, "); run one process without WORLD_SIZE, or see docs/distributed.md");
  } catch (const tg::Error& e) {
    std::cerr << "train_vit: error: " << e.what() << "\n";
    return 2;
  }
  try {
    tg::train::run_training(options, std::cout);
  } catch (const std::exception& e) {
    std::cout << std::flush;
    std::cerr << "train_vit: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
