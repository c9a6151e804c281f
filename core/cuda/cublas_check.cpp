// cuBLAS error reporting.
#include "core/cuda/cublas_check.h"

namespace tg::detail {

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw BackendError(concat("cuBLAS error ", static_cast<int>(status), " (", cublasGetStatusString(status),
                            ") in ", call, " at ", where(file, line)));
}

}  // namespace tg::detail
