// Return-code checks for the CUDA runtime, cuBLAS and cuDNN: a failure throws BackendError
// (OutOfMemoryError for allocation failures) naming file:line, the call and the library's
// error string.
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

namespace tg::detail {
[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
}  // namespace tg::detail

#define TG_CUDA_CHECK(call)                                                  \
  do {                                                                       \
    const cudaError_t tg_status_ = (call);                                   \
    if (tg_status_ != cudaSuccess) [[unlikely]]                              \
      ::tg::detail::throw_cuda_error(tg_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports launch-configuration errors at the launch site.
#define TG_CUDA_CHECK_LAUNCH() TG_CUDA_CHECK(cudaGetLastError())
