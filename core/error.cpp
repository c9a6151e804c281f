// Out-of-line helpers of error.h.
#include "core/error.h"

namespace tg::detail {

std::string where(const char* file, int line) { return concat(file, ":", line); }

}  // namespace tg::detail

namespace tg {

namespace {
template <class First, class... Rest>
[[noreturn]] void rethrow_as(const Error& error, const std::string& message) {
  if (dynamic_cast<const First*>(&error)) throw First(message);
  if constexpr (sizeof...(Rest) > 0) rethrow_as<Rest...>(error, message);
  throw Error(message);
}
}  // namespace

void rethrow_with_prefix(const Error& error, const std::string& prefix) {
  rethrow_as<ShapeError, ValueError, IndexError, TypeError, NotImplementedError, OutOfMemoryError, IoError,
             BackendError, DistributedError, InternalError>(error, prefix + error.what());
}

}  // namespace tg
