// Helpers of the memory-planning tests: the small ViT setup the planner and allocation tests
// predict for, and the message of the error a call raises.
#pragma once

#include <functional>
#include <string>

#include "apps/vit/memory_model.h"
#include "core/error.h"

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

// The message of the tg::Error `f` throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace tg::test
