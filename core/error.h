// Typed errors and the checking macros used across tapegrad.
//
// User-caused problems (bad shapes, dtypes, indices, values, files, out of memory) throw a
// subclass of tg::Error through TG_CHECK with a message that says what was expected and what
// was found. Broken internal invariants use TG_INTERNAL_ASSERT (a bug in tapegrad, not in the
// caller) and record file:line; TG_CHECK messages name the operation instead (a user's bad
// input is not a place in tapegrad's source).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tg {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ShapeError : public Error { using Error::Error; };           // incompatible shapes
class ValueError : public Error { using Error::Error; };           // bad argument value
class IndexError : public Error { using Error::Error; };           // index/dim out of range
class TypeError : public Error { using Error::Error; };            // dtype or device mismatch
class NotImplementedError : public Error { using Error::Error; };  // unsupported combination
class OutOfMemoryError : public Error { using Error::Error; };     // allocator exhausted
class IoError : public Error { using Error::Error; };              // missing or malformed file
class BackendError : public Error { using Error::Error; };         // CUDA/cuBLAS/cuDNN/NCCL failure
class DistributedError : public Error { using Error::Error; };     // a peer rank, the store or the launcher failed
class InternalError : public Error { using Error::Error; };        // tapegrad bug

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
std::string where(const char* file, int line);
}  // namespace detail

// Throws `error` again as the same tg::Error subclass with `prefix` put before its message
// (e.g. the file a state dict came from).
[[noreturn]] void rethrow_with_prefix(const Error& error, const std::string& prefix);

}  // namespace tg

// TG_CHECK(cond, ErrorType, message parts...): throws tg::ErrorType when cond is false.
#define TG_CHECK(cond, ErrorType, ...)                                                  \
  do {                                                                                  \
    if (!(cond)) [[unlikely]]                                                           \
      throw ::tg::ErrorType(::tg::detail::concat(__VA_ARGS__));                         \
  } while (0)

// TG_THROW(ErrorType, message parts...): unconditional form of TG_CHECK.
#define TG_THROW(ErrorType, ...) throw ::tg::ErrorType(::tg::detail::concat(__VA_ARGS__))

// TG_INTERNAL_ASSERT(cond, message parts...): an invariant of tapegrad itself.
#define TG_INTERNAL_ASSERT(cond, ...)                                                   \
  do {                                                                                  \
    if (!(cond)) [[unlikely]]                                                           \
      throw ::tg::InternalError(::tg::detail::concat(                                   \
          "internal assertion failed: " #cond " at ", ::tg::detail::where(__FILE__, __LINE__), \
          ". " __VA_OPT__(, ) __VA_ARGS__));                                            \
  } while (0)
