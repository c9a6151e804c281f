// TEMPORARY: make_strategy for "exact" only, until ops/matmul/wta_crs.cpp defines the real one
// (wta-crs, crs, topk). Delete this file (and its line in apps/CMakeLists.txt) when that lands.
#include "ops/matmul/strategy.h"

#include "core/error.h"

namespace tg {

std::shared_ptr<BackwardStrategy> make_strategy(const StrategyConfig& config, uint64_t) {
  TG_CHECK(config.ratio > 0 && config.ratio <= 1, ValueError, "make_strategy: ratio must be in (0, 1], got ",
           config.ratio);
  if (config.name == "exact") return std::make_shared<ExactStrategy>();
  TG_CHECK(config.name == "wta-crs" || config.name == "crs" || config.name == "topk", ValueError,
           "make_strategy: unknown strategy '", config.name, "' (expected exact, wta-crs, crs or topk)");
  TG_THROW(NotImplementedError, "backward strategy '", config.name, "' is not implemented in this build yet");
}

}  // namespace tg
