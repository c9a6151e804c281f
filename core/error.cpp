// Out-of-line helpers of error.h.
#include "core/error.h"

namespace tg::detail {

std::string where(const char* file, int line) { return concat(file, ":", line); }

}  // namespace tg::detail
