// RAII guard that makes a CUDA device current and restores the previous one.
#pragma once

#include <cuda_runtime.h>

#include "core/cuda/cuda_check.h"

namespace tg {

class DeviceGuard {
 public:
  explicit DeviceGuard(int index) {
    TG_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != index) TG_CUDA_CHECK(cudaSetDevice(index));
    changed_ = previous_ != index;
  }
  ~DeviceGuard() {
    if (changed_) (void)cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

}  // namespace tg
