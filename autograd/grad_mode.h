// Grad mode: whether ops record nodes on this thread. NoGradGuard turns recording off for a
// scope (evaluation, optimizer steps, backward itself); GradModeGuard sets either mode (a
// checkpointed function's rerun records inside a backward).
#pragma once

namespace tg {

class GradMode {
 public:
  static bool enabled();
  static void set_enabled(bool enabled);
};

// Sets grad mode for a scope and restores the previous mode when it ends.
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled) : previous_(GradMode::enabled()) { GradMode::set_enabled(enabled); }
  ~GradModeGuard() { GradMode::set_enabled(previous_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};

class NoGradGuard : public GradModeGuard {
 public:
  NoGradGuard() : GradModeGuard(false) {}
};

}  // namespace tg
