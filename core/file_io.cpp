// Untrusted-file reading and overflow-checked size arithmetic (core/file_io.h).
#include "core/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "core/error.h"

namespace tg {

std::optional<int64_t> checked_mul(int64_t a, int64_t b) {
  int64_t out = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

std::optional<int64_t> checked_product(const std::vector<int64_t>& factors) {
  int64_t product = 1;
  for (int64_t f : factors) {
    const std::optional<int64_t> next = checked_mul(product, f);
    if (!next) return std::nullopt;
    product = *next;
  }
  return product;
}

void check_regular_file(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    const int code = errno;
    TG_CHECK(code != ENOENT && code != ENOTDIR, IoError, "cannot read '", path, "': no such file");
    TG_THROW(IoError, "cannot read '", path, "': ", std::strerror(code));
  }
  if (S_ISREG(info.st_mode)) return;
  const char* what = S_ISDIR(info.st_mode)    ? "a directory"
                     : S_ISFIFO(info.st_mode) ? "a FIFO (named pipe)"
                     : S_ISSOCK(info.st_mode) ? "a socket"
                     : S_ISCHR(info.st_mode) || S_ISBLK(info.st_mode) ? "a device"
                                                                       : "not a regular file";
  TG_THROW(IoError, "cannot read '", path, "': it is ", what, ", expected a regular file");
}

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TG_CHECK(fd >= 0, IoError, "cannot open '", path, "' to sync it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int code = errno;
  ::close(fd);
  TG_CHECK(rc == 0, IoError, "cannot sync '", path, "' to disk: ", std::strerror(code));
}

void throw_host_oom(const std::string& path, uint64_t bytes) {
  TG_THROW(OutOfMemoryError, "out of host memory while loading '", path, "': could not hold ", bytes,
           " bytes (free host memory, or load a subset of the data)");
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  check_regular_file(path);
  std::FILE* file = std::fopen(path.c_str(), "rb");
  TG_CHECK(file != nullptr, IoError, "cannot open '", path, "': ", std::strerror(errno));
  struct stat info {};
  const bool sized = ::fstat(::fileno(file), &info) == 0;
  const auto size = sized ? static_cast<uint64_t>(info.st_size) : 0;
  std::vector<uint8_t> bytes;
  try {
    bytes.resize(size);
  } catch (const std::bad_alloc&) {
    std::fclose(file);
    throw_host_oom(path, size);
  }
  const size_t got = size > 0 ? std::fread(bytes.data(), 1, size, file) : 0;
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  TG_CHECK(sized && !failed && got == size, IoError, "cannot read '", path, "': read ", got, " of ", size,
           " bytes (", failed ? std::strerror(errno) : "the file changed while it was read", ")");
  return bytes;
}

}  // namespace tg
