// Helpers of the memory-planning tests: the small ViT setup the planner and allocation tests
// predict for, and the ValueError train_vit's parser raises for a command line.
#pragma once

#include <string>
#include <vector>

#include "apps/vit/memory_model.h"
#include "tests/apps/train_vit_fixture.h"
#include "tests/support/test_support.h"

namespace tg::test {

// vit-tiny at 32 px with 4-px patches (65 tokens), 3 blocks, batch 16.
inline vit::StepSetup small_planning_setup() {
  vit::StepSetup s;
  s.config = vit::preset("vit-tiny");
  s.config.image_size = 32;
  s.config.patch_size = 4;
  s.config.depth = 3;
  s.batch = 16;
  return s;
}

// The ValueError's message for these flags after --dataset synthetic --device cpu.
inline std::string planning_parse_error(std::vector<std::string> args) {
  args.insert(args.begin(), {"--dataset", "synthetic", "--device", "cpu"});
  return thrown_message<ValueError>([&] { parse_args(args); }, "(no ValueError)");
}

}  // namespace tg::test
