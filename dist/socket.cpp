// TCP helpers of socket.h on POSIX sockets (IPv4 and IPv6 through getaddrinfo for connect).
#include "dist/socket.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "core/error.h"

namespace tg::dist {

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

int Fd::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

namespace {

std::string errno_text(int error) { return std::strerror(error); }

// Milliseconds left until `deadline` for poll(2), at least 0; -1 (no limit) for time_point::max().
int poll_ms(Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) return -1;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1'000'000));
}

bool connected_to_itself(int fd) {
  sockaddr_storage local{}, peer{};
  socklen_t local_length = sizeof local, peer_length = sizeof peer;
  return ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) == 0 &&
         ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) == 0 && local_length == peer_length &&
         std::memcmp(&local, &peer, local_length) == 0;
}

void set_no_delay(int fd) {
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

Fd listen_tcp(int port) {
  Fd socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  TG_CHECK(socket.valid(), DistributedError, "TcpStore: could not create a socket: ", errno_text(errno));
  const int one = 1;
  (void)::setsockopt(socket.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = htons(static_cast<uint16_t>(port));
  TG_CHECK(::bind(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0, DistributedError,
           "TcpStore: rank 0 could not listen on port ", port, ": ", errno_text(errno),
           " (is another job using MASTER_PORT?)");
  TG_CHECK(::listen(socket.get(), 128) == 0, DistributedError, "TcpStore: rank 0 could not listen on port ", port, ": ",
           errno_text(errno));
  return socket;
}

int bound_port(const Fd& socket) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  TG_CHECK(::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0, DistributedError,
           "TcpStore: getsockname failed: ", errno_text(errno));
  return ntohs(address.sin_port);
}

Fd connect_tcp(const std::string& host, int port, Clock::time_point deadline, const std::string& who) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string service = std::to_string(port);
  std::string last_error = "no attempt was made";
  auto pause = std::chrono::milliseconds(10);
  do {
    addrinfo* found = nullptr;
    const int resolved = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
    if (resolved != 0) {
      last_error = std::string("cannot resolve the host: ") + ::gai_strerror(resolved);
    } else {
      for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
        Fd socket(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
        if (!socket.valid()) {
          last_error = errno_text(errno);
          continue;
        }
        if (::connect(socket.get(), a->ai_addr, a->ai_addrlen) != 0) {
          last_error = errno_text(errno);
        } else if (connected_to_itself(socket.get())) {
          // Retrying a local port nobody listens at can make the kernel pick that very port for
          // the connecting socket: a TCP self-connection, not the store.
          last_error = "Connection refused";
        } else {
          ::freeaddrinfo(found);
          set_no_delay(socket.get());
          return socket;
        }
      }
      ::freeaddrinfo(found);
    }
    // Rank 0 may not be listening yet: retry with a growing pause (10 ms .. 1 s).
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, std::max<Clock::duration>(deadline - Clock::now(), {})));
    pause = std::min(pause * 2, std::chrono::milliseconds(1000));
  } while (Clock::now() < deadline);
  TG_THROW(DistributedError, "TcpStore: ", who, " could not connect to the store of rank 0 at ", host, ":", port,
           " before the timeout (last error: ", last_error, ")");
}

void send_all(const Fd& socket, const void* data, size_t size, const std::string& peer) {
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t sent = ::send(socket.get(), bytes, size, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    TG_CHECK(sent > 0, DistributedError, "TcpStore: sending to ", peer, " failed: ", errno_text(errno));
    bytes += sent;
    size -= static_cast<size_t>(sent);
  }
}

bool recv_all(const Fd& socket, void* data, size_t size, Clock::time_point deadline, const std::string& peer,
              bool eof_ok) {
  char* bytes = static_cast<char*>(data);
  const size_t total = size;
  while (size > 0) {
    pollfd waiting{socket.get(), POLLIN, 0};
    const int ready = ::poll(&waiting, 1, poll_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    TG_CHECK(ready >= 0, DistributedError, "TcpStore: waiting for ", peer, " failed: ", errno_text(errno));
    TG_CHECK(ready > 0, DistributedError, "TcpStore: ", peer, " did not answer before the timeout");
    const ssize_t got = ::recv(socket.get(), bytes, size, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got == 0 && eof_ok && size == total) return false;
    TG_CHECK(got != 0, DistributedError, "TcpStore: ", peer, " closed the connection");
    TG_CHECK(got > 0, DistributedError, "TcpStore: receiving from ", peer, " failed: ", errno_text(errno));
    bytes += got;
    size -= static_cast<size_t>(got);
  }
  return true;
}

}  // namespace tg::dist
