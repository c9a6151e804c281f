// TcpStore (store.h): the wire format, rank 0's server (one thread accepting, one per client
// connection) and the client side, plus the rendezvous helpers all_gather and
// broadcast_from_rank0.
//
// Wire format: every request and every reply is a frame, u64 payload length then the payload;
// integers little-endian; a string is u32 length + bytes, a blob u64 length + bytes.
//   set:  u8 1, key, blob      -> u8 1
//   get:  u8 2, key            -> u8 found, blob (empty when not found)
//   wait: u8 3, u64 timeout_ms, u32 n, n keys  -> u32 m, the m keys still missing at the timeout
//   erase: u8 4, key           -> u8 erased (0 when the key was not set)
// The server answers a wait as soon as every key is set, or at its timeout with what is missing.
#include "dist/store.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <optional>
#include <thread>

#include "core/error.h"

namespace tg::dist {

namespace {

enum class Op : uint8_t { set = 1, get = 2, wait = 3, erase = 4 };
constexpr uint64_t kMaxFrameBytes = uint64_t{64} << 20;  // a value, a key list: far below this
// The client waits this much longer than the server for a wait's answer (which the server
// sends at its own timeout).
constexpr std::chrono::seconds kReplySlack{10};
constexpr uint64_t kMaxWaitMs = uint64_t{1} << 40;  // about 35 years

class Writer {
 public:
  Writer& u8(uint8_t v) { return raw(&v, 1); }
  Writer& u32(uint32_t v) { return little_endian(v, 4); }
  Writer& u64(uint64_t v) { return little_endian(v, 8); }
  Writer& str(const std::string& s) { return u32(static_cast<uint32_t>(s.size())).raw(s.data(), s.size()); }
  Writer& blob(const Bytes& b) { return u64(b.size()).raw(b.data(), b.size()); }
  // The frame: u64 length, then the payload.
  Bytes frame() const {
    Writer out;
    out.u64(payload_.size()).raw(payload_.data(), payload_.size());
    return out.payload_;
  }

 private:
  Writer& raw(const void* data, size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    payload_.insert(payload_.end(), p, p + size);
    return *this;
  }
  Writer& little_endian(uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) payload_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  Bytes payload_;
};

// Reads a payload; a field running past its end is a DistributedError (a corrupt or foreign peer).
class Reader {
 public:
  explicit Reader(const Bytes& payload) : payload_(payload) {}
  uint8_t u8() { return static_cast<uint8_t>(little_endian(1)); }
  uint32_t u32() { return static_cast<uint32_t>(little_endian(4)); }
  uint64_t u64() { return little_endian(8); }
  std::string str() {
    const uint32_t size = u32();
    const uint8_t* p = take(size);
    return std::string(p, p + size);
  }
  // A count of items that take at least `item_bytes` each: no more than the rest of the payload holds.
  uint32_t count(size_t item_bytes) {
    const uint32_t n = u32();
    TG_CHECK(n <= (payload_.size() - at_) / item_bytes, DistributedError, "TcpStore: malformed message: ", n,
             " items announced, but only ", payload_.size() - at_, " bytes follow");
    return n;
  }
  Bytes blob() {
    const uint64_t size = u64();
    const uint8_t* p = take(size);
    return Bytes(p, p + size);
  }

 private:
  const uint8_t* take(uint64_t size) {
    TG_CHECK(size <= payload_.size() - at_, DistributedError, "TcpStore: malformed message: a field of ", size,
             " bytes at offset ", at_, " runs past the end of a ", payload_.size(), "-byte message");
    const uint8_t* p = payload_.data() + at_;
    at_ += size;
    return p;
  }
  uint64_t little_endian(int bytes) {
    const uint8_t* p = take(static_cast<uint64_t>(bytes));
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{p[i]} << (8 * i);
    return v;
  }
  const Bytes& payload_;
  size_t at_ = 0;
};

// One frame's payload from `socket`; nullopt when the peer hung up between frames (eof_ok).
std::optional<Bytes> recv_frame(const Fd& socket, Clock::time_point deadline, const std::string& peer, bool eof_ok) {
  uint8_t header[8];
  if (!recv_all(socket, header, sizeof header, deadline, peer, eof_ok)) return std::nullopt;
  uint64_t size = 0;
  for (int i = 0; i < 8; ++i) size |= uint64_t{header[i]} << (8 * i);
  TG_CHECK(size <= kMaxFrameBytes, DistributedError, "TcpStore: ", peer, " sent a message of ", size,
           " bytes; the limit is ", kMaxFrameBytes, " (is something other than a tapegrad store at that port?)");
  Bytes payload(size);
  recv_all(socket, payload.data(), payload.size(), deadline, peer);
  return payload;
}

std::string quoted_list(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& key : keys) out += (out.empty() ? "'" : ", '") + key + "'";
  return out;
}

}  // namespace

// Rank 0's side: the key-value map, a thread accepting connections, a thread per connection.
class TcpStore::Server {
 public:
  explicit Server(int port) : listener_(listen_tcp(port)), port_(bound_port(listener_)) {
    int ends[2];
    TG_CHECK(::pipe2(ends, O_CLOEXEC) == 0, DistributedError, "TcpStore: pipe2 failed");
    wake_read_ = Fd(ends[0]);
    wake_write_ = Fd(ends[1]);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~Server() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      for (auto& connection : connections_) ::shutdown(connection->socket.get(), SHUT_RDWR);
    }
    changed_.notify_all();
    const char byte = 0;
    (void)!::write(wake_write_.get(), &byte, 1);
    acceptor_.join();
    for (auto& connection : connections_) connection->thread.join();
  }

  int port() const { return port_; }

 private:
  struct Connection {
    Fd socket;
    std::thread thread;
  };

  void accept_loop() {
    while (true) {
      pollfd waiting[2] = {{listener_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
      if (::poll(waiting, 2, -1) < 0) continue;  // EINTR
      if (waiting[1].revents != 0) return;
      Fd socket(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!socket.valid()) continue;
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      auto connection = std::make_unique<Connection>();
      connection->socket = std::move(socket);
      Connection* c = connection.get();
      c->thread = std::thread([this, c] { serve(c->socket); });
      connections_.push_back(std::move(connection));
    }
  }

  // Answers one client's requests until it hangs up or the server stops. A client that breaks
  // the protocol or vanishes mid-request loses its connection; its own process reports why.
  void serve(const Fd& socket) {
    try {
      while (auto payload = recv_frame(socket, Clock::time_point::max(), "a client", /*eof_ok=*/true)) {
        Reader in(*payload);
        bool stored = false;
        const Bytes reply = answer(in, stored);
        send_all(socket, reply.data(), reply.size(), "a client");
        // Waiters wake after the setter has its reply: when a wait that ends a job returns and
        // rank 0 stops the store, the last setter is not left without an answer.
        if (stored) changed_.notify_all();
      }
    } catch (const Error&) {
    }
    ::shutdown(socket.get(), SHUT_RDWR);  // the client sees the hang-up (the fd closes with the server)
  }

  // The reply to one request; `stored` tells a set (waiters must then be woken).
  Bytes answer(Reader& in, bool& stored) {
    Writer out;
    const auto op = static_cast<Op>(in.u8());
    if (op == Op::set) {
      std::string key = in.str();
      Bytes value = in.blob();
      std::lock_guard lock(mutex_);
      values_[std::move(key)] = std::move(value);
      stored = true;
      return out.u8(1).frame();
    }
    if (op == Op::get) {
      const std::string key = in.str();
      std::lock_guard lock(mutex_);
      const auto found = values_.find(key);
      return found == values_.end() ? out.u8(0).blob({}).frame() : out.u8(1).blob(found->second).frame();
    }
    if (op == Op::erase) {
      const std::string key = in.str();
      std::lock_guard lock(mutex_);
      return out.u8(values_.erase(key) > 0 ? 1 : 0).frame();
    }
    TG_CHECK(op == Op::wait, DistributedError, "TcpStore: unknown request ", static_cast<int>(op));
    // At most kMaxWaitMs, so that no timeout a peer sends can overflow the clock's arithmetic.
    const auto deadline = Clock::now() + std::chrono::milliseconds(std::min(in.u64(), kMaxWaitMs));
    std::vector<std::string> keys(in.count(4));
    for (auto& key : keys) key = in.str();
    std::vector<std::string> missing;
    std::unique_lock lock(mutex_);
    changed_.wait_until(lock, deadline, [&] {
      missing.clear();
      for (const auto& key : keys)
        if (!values_.contains(key)) missing.push_back(key);
      return missing.empty() || stopping_;
    });
    out.u32(static_cast<uint32_t>(missing.size()));
    for (const auto& key : missing) out.str(key);
    return out.frame();
  }

  Fd listener_;
  int port_;
  Fd wake_read_, wake_write_;
  std::thread acceptor_;
  std::mutex mutex_;  // values_, connections_, stopping_
  std::condition_variable changed_;
  std::map<std::string, Bytes> values_;
  std::vector<std::unique_ptr<Connection>> connections_;
  bool stopping_ = false;
};

TcpStore::TcpStore(const StoreOptions& options) : options_(options) {
  TG_CHECK(options_.world_size >= 1 && options_.rank >= 0 && options_.rank < options_.world_size, ValueError,
           "TcpStore: rank must be in [0, world size ", options_.world_size, "), got ", options_.rank);
  TG_CHECK(options_.timeout.count() > 0, ValueError, "TcpStore: the timeout must be positive, got ",
           options_.timeout.count(), " ms");
  port_ = options_.port;
  if (options_.rank == 0) {
    server_ = std::make_unique<Server>(options_.port);
    port_ = server_->port();
  }
  connection_ = connect_tcp(options_.rank == 0 ? "127.0.0.1" : options_.host, port_,
                            Clock::now() + options_.timeout, "rank " + std::to_string(options_.rank));
}

TcpStore::~TcpStore() {
  connection_ = Fd();  // hang up before the server stops
  server_.reset();
}

std::string TcpStore::server_name() const {
  return "the store of rank 0 at " + options_.host + ":" + std::to_string(port_);
}

Bytes TcpStore::request(const Bytes& message, Clock::time_point deadline) {
  std::lock_guard lock(mutex_);
  send_all(connection_, message.data(), message.size(), server_name());
  return *recv_frame(connection_, deadline, server_name(), /*eof_ok=*/false);
}

void TcpStore::set(const std::string& key, const Bytes& value) {
  request(Writer().u8(static_cast<uint8_t>(Op::set)).str(key).blob(value).frame(), Clock::now() + options_.timeout);
}

void TcpStore::erase(const std::string& key) {
  request(Writer().u8(static_cast<uint8_t>(Op::erase)).str(key).frame(), Clock::now() + options_.timeout);
}

std::vector<std::string> TcpStore::missing_after_wait(const std::vector<std::string>& keys) {
  Writer message;
  message.u8(static_cast<uint8_t>(Op::wait)).u64(static_cast<uint64_t>(options_.timeout.count()));
  message.u32(static_cast<uint32_t>(keys.size()));
  for (const auto& key : keys) message.str(key);
  const Bytes reply = request(message.frame(), Clock::now() + options_.timeout + kReplySlack);
  Reader in(reply);
  std::vector<std::string> missing(in.count(4));
  for (auto& key : missing) key = in.str();
  return missing;
}

void TcpStore::wait(const std::vector<std::string>& keys) {
  const auto missing = missing_after_wait(keys);
  TG_CHECK(missing.empty(), DistributedError, "TcpStore: rank ", options_.rank, " waited ", options_.timeout.count(),
           " ms for ", quoted_list(keys), "; still not set: ", quoted_list(missing));
}

Bytes TcpStore::get(const std::string& key) {
  wait({key});
  const Bytes reply = request(Writer().u8(static_cast<uint8_t>(Op::get)).str(key).frame(), Clock::now() + options_.timeout);
  Reader in(reply);
  TG_INTERNAL_ASSERT(in.u8() == 1, "the store lost key '", key, "' after reporting it set");
  return in.blob();
}

std::vector<Bytes> all_gather(TcpStore& store, const std::string& prefix, const Bytes& mine) {
  const auto key_of = [&](int rank) { return prefix + "/" + std::to_string(rank); };
  store.set(key_of(store.rank()), mine);
  std::vector<std::string> keys;
  for (int r = 0; r < store.world_size(); ++r) keys.push_back(key_of(r));
  const auto missing = store.missing_after_wait(keys);
  if (!missing.empty()) {
    std::string ranks;
    for (const auto& key : missing) ranks += (ranks.empty() ? "" : ", ") + key.substr(prefix.size() + 1);
    TG_THROW(DistributedError, "TcpStore: rank ", store.rank(), " waited ", store.timeout().count(), " ms for '",
             prefix, "' from all ", store.world_size(), " ranks; missing rank(s): ", ranks);
  }
  std::vector<Bytes> values;
  for (const auto& key : keys) values.push_back(store.get(key));
  return values;
}

Bytes broadcast_from_rank0(TcpStore& store, const std::string& key, const Bytes& value) {
  if (store.rank() == 0) {
    store.set(key, value);
    return value;
  }
  TG_CHECK(store.missing_after_wait({key}).empty(), DistributedError, "TcpStore: rank ", store.rank(), " waited ",
           store.timeout().count(), " ms for '", key, "' from rank 0; missing rank(s): 0");
  return store.get(key);
}

}  // namespace tg::dist
