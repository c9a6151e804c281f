// Return-code check for cuDNN: a failure throws BackendError naming file:line, the call, cuDNN's
// status string and cuDNN's last error message (which names the attribute or graph it rejected).
#pragma once

#include <cudnn.h>

#include <string>

#include "core/error.h"

namespace tg::detail {
[[noreturn]] void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line);
// cuDNN's status string and last error message, for reports that do not throw.
std::string cudnn_error_text(cudnnStatus_t status);
}  // namespace tg::detail

#define TG_CUDNN_CHECK(call)                                                  \
  do {                                                                        \
    const cudnnStatus_t tg_status_ = (call);                                  \
    if (tg_status_ != CUDNN_STATUS_SUCCESS) [[unlikely]]                      \
      ::tg::detail::throw_cudnn_error(tg_status_, #call, __FILE__, __LINE__); \
  } while (0)
