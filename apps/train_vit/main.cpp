// train_vit: trains a Vision Transformer on an image dataset with exact or sampled (WTA-CRS)
// matmul backward and reports accuracy, speed and memory. Flags: train_vit --help and
// docs/train_vit.md. Exit codes: 0 success, 2 usage error (bad flag, value or combination,
// found before any work), 1 runtime error (missing or corrupt data, I/O, divergence, ...).
#include <exception>
#include <iostream>

#include "apps/train_vit/options.h"
#include "apps/train_vit/trainer.h"
#include "core/error.h"

int main(int argc, char** argv) {
  tg::train::Options options;
  try {
    const auto parsed = tg::train::parse_command_line(argc, argv, std::cout);
    if (!parsed) return 0;  // --help
    options = *parsed;
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
