// Helpers shared by the tests: which device a test executable targets, where a built executable
// is, and numeric comparison.
#pragma once

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/tensor.h"

#ifndef TG_TEST_CUDA
#define TG_TEST_CUDA 0
#endif

namespace tg::test {

// An executable where CMake built it (`built`) or, when the build folder was moved (binaries
// carried to the GPU machine), at `from_test`: its path relative to the running test executable.
inline std::string built_executable(const std::string& built, const std::string& from_test) {
  if (std::filesystem::exists(built)) return built;
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / from_test).string();
}

// The message of the `ErrorType` that `f` throws, or `none` when it throws none (other errors
// propagate and fail the test).
template <class ErrorType = Error>
std::string thrown_message(const std::function<void()>& f, const char* none = "(no error)") {
  try {
    f();
  } catch (const ErrorType& e) {
    return e.what();
  }
  return none;
}

// True in executables that hold CUDA tests (built with TG_TEST_CUDA=1).
inline bool cuda_tests_requested() { return TG_TEST_CUDA != 0; }

// The device the current executable's device-generic tests run on.
inline Device test_device() { return cuda_tests_requested() ? Device::cuda(0) : Device::cpu(); }

// While alive, every allocation on `device` starts filled with NaN bytes.
class PoisonGuard {
 public:
  explicit PoisonGuard(Device device) : device_(device) { allocator_for(device_).set_poison(true); }
  ~PoisonGuard() { allocator_for(device_).set_poison(false); }
  PoisonGuard(const PoisonGuard&) = delete;
  PoisonGuard& operator=(const PoisonGuard&) = delete;

 private:
  Device device_;
};

// ||a - b|| / ||b|| over two equally long sequences; when b is all zero, ||a - b|| itself.
template <class A, class B>
double relative_error(const std::vector<A>& a, const std::vector<B>& b) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    diff += d * d;
    ref += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  if (a.size() != b.size()) return INFINITY;
  return ref > 0 ? std::sqrt(diff / ref) : std::sqrt(diff);
}

}  // namespace tg::test
