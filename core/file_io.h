// Reading files whose contents are not trusted (datasets, checkpoints a user downloaded), and
// size arithmetic on numbers taken from such files: every product is overflow-checked, every
// "not a regular file" case gets its own message, and running out of host memory while reading
// is a tg::OutOfMemoryError naming the file instead of a bare std::bad_alloc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tg {

// a * b, or nullopt when it does not fit in an int64 (both must be >= 0).
std::optional<int64_t> checked_mul(int64_t a, int64_t b);
// The product of `factors` (each >= 0), or nullopt on overflow.
std::optional<int64_t> checked_product(const std::vector<int64_t>& factors);

// IoError unless `path` names a regular file (following symlinks); the message says what it is
// instead: no such file, a directory, a FIFO, a socket, a device, or why stat failed.
void check_regular_file(const std::string& path);

// The whole file as bytes (check_regular_file first). IoError for read failures;
// OutOfMemoryError naming the file and its size when the host cannot hold it.
std::vector<uint8_t> read_file_bytes(const std::string& path);

// fsync(2) of a file or a folder (after a rename, the folder's entry), so that what was written
// survives a crash of the machine; IoError naming the path on failure.
void fsync_path(const std::string& path);

// Throws OutOfMemoryError naming `path` and `bytes` (what the reader tried to hold): for a
// std::bad_alloc caught while loading a file.
[[noreturn]] void throw_host_oom(const std::string& path, uint64_t bytes);

}  // namespace tg
