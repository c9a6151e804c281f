// TcpStore: the minimal key-value store through which the ranks of a job meet (the NCCL
// unique id, join records). Rank 0 serves it at MASTER_PORT on every interface, in a thread of
// its own process; every rank (rank 0 included) is a client of it. Keys are strings, values byte
// blobs; set overwrites, get and wait block until the keys exist or the timeout passes.
// Protocol and conventions: docs/distributed.md ("Rendezvous").
//
// Every failure is a DistributedError naming who could not reach whom, or which keys (for the
// rendezvous helpers below: which ranks) were still missing at the timeout. Keep the store
// alive for the whole job: when rank 0's store is destroyed, the others' requests fail.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dist/socket.h"

namespace tg::dist {

using Bytes = std::vector<uint8_t>;

struct StoreOptions {
  std::string host = "127.0.0.1";  // rank 0's address (MASTER_ADDR)
  int port = 0;                     // MASTER_PORT; 0 on rank 0 lets the system pick one (see port())
  int rank = 0;
  int world_size = 1;
  std::chrono::milliseconds timeout{300'000};  // for connecting and for every get/wait
};

class TcpStore {
 public:
  // Rank 0 starts serving, then (every rank) connects, retrying until the timeout.
  explicit TcpStore(const StoreOptions& options);
  ~TcpStore();
  TcpStore(const TcpStore&) = delete;
  TcpStore& operator=(const TcpStore&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  std::chrono::milliseconds timeout() const { return options_.timeout; }
  int port() const { return port_; }  // the port the store listens at (rank 0 knows it first)

  void set(const std::string& key, const Bytes& value);
  // Removes `key` (nothing happens when it is not set): collectives over the store drop what
  // every rank has read, so the server's memory stays bounded.
  void erase(const std::string& key);
  // The value of `key`, waiting until it is set; DistributedError at the timeout.
  Bytes get(const std::string& key);
  // Returns when every key is set; DistributedError naming the missing keys at the timeout.
  void wait(const std::vector<std::string>& keys);
  // Waits like wait() but returns the keys still missing at the timeout (empty: all set).
  std::vector<std::string> missing_after_wait(const std::vector<std::string>& keys);

 private:
  class Server;
  Bytes request(const Bytes& message, Clock::time_point deadline);
  std::string server_name() const;

  StoreOptions options_;
  std::unique_ptr<Server> server_;  // rank 0 only
  int port_ = 0;
  std::mutex mutex_;  // one request at a time on the connection
  Fd connection_;
};

// Every rank publishes `mine` under "<prefix>/<rank>"; returns the values of all ranks in rank
// order. At the timeout, a DistributedError names the ranks that have not published.
std::vector<Bytes> all_gather(TcpStore& store, const std::string& prefix, const Bytes& mine);

// Rank 0 publishes `value` under `key` and returns it; the others return what rank 0 published
// (their `value` is ignored). At the timeout, a DistributedError says rank 0 did not publish.
Bytes broadcast_from_rank0(TcpStore& store, const std::string& key, const Bytes& value);

}  // namespace tg::dist
