// TCP sockets for the store (store.h): an owning file descriptor, listening, connecting with
// retry until a deadline, and whole-message sends and receives that give up at a deadline.
// Every failure is a DistributedError that names the peer and the system's reason.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace tg::dist {

using Clock = std::chrono::steady_clock;

// Owns a file descriptor; closes it on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release();

 private:
  int fd_ = -1;
};

// A listening IPv4 socket on every interface at `port` (0: the system picks one).
Fd listen_tcp(int port);
// The port a listening socket is bound to.
int bound_port(const Fd& socket);

// Connects to host:port, retrying refused or unreachable attempts until `deadline`; `who` names
// the connecting side in the error ("rank 3").
Fd connect_tcp(const std::string& host, int port, Clock::time_point deadline, const std::string& who);

// Sends all `size` bytes. `peer` names the other side in the error.
void send_all(const Fd& socket, const void* data, size_t size, const std::string& peer);
// Receives exactly `size` bytes, or throws: the peer closed the connection, an error, or
// `deadline` passed (Clock::time_point::max(): no limit). Returns false only when the peer closed the connection before the first
// byte and `eof_ok` is set (a client hanging up between requests).
bool recv_all(const Fd& socket, void* data, size_t size, Clock::time_point deadline, const std::string& peer,
              bool eof_ok = false);

}  // namespace tg::dist
