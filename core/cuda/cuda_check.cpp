// CUDA runtime error reporting.
#include "core/cuda/cuda_check.h"

namespace tg::detail {

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  (void)cudaGetLastError();  // clear the non-sticky error so later calls do not report it again
  const std::string message = concat("CUDA error ", static_cast<int>(status), " (",
                                     cudaGetErrorName(status), ": ", cudaGetErrorString(status),
                                     ") in ", call, " at ", where(file, line));
  if (status == cudaErrorMemoryAllocation) throw OutOfMemoryError(message);
  throw BackendError(message);
}

}  // namespace tg::detail
