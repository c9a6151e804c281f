// cuDNN error reporting.
#include "core/cuda/cudnn_check.h"

namespace tg::detail {

std::string cudnn_error_text(cudnnStatus_t status) {
  char last[1024] = {};
  cudnnGetLastErrorString(last, sizeof last);
  std::string text = concat("cuDNN error ", static_cast<int>(status), " (", cudnnGetErrorString(status), ")");
  if (last[0] != '\0') text += concat(": ", last);
  return text;
}

void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line) {
  throw BackendError(concat(cudnn_error_text(status), " in ", call, " at ", where(file, line)));
}

}  // namespace tg::detail
