// Return-code check for cuBLAS and cuBLASLt (both report cublasStatus_t): a failure throws
// BackendError naming file:line, the call and cuBLAS's status string.
#pragma once

#include <cublas_api.h>

#include "core/error.h"

namespace tg::detail {
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);
}  // namespace tg::detail

#define TG_CUBLAS_CHECK(call)                                                  \
  do {                                                                         \
    const cublasStatus_t tg_status_ = (call);                                  \
    if (tg_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                      \
      ::tg::detail::throw_cublas_error(tg_status_, #call, __FILE__, __LINE__); \
  } while (0)
