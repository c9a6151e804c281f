// The TCP store and the rendezvous helpers: set/get/wait across threads and forked processes on
// localhost, blocking get, and the exact messages of timeouts (naming the missing ranks), of a
// refused connection and of a vanished server; a malformed client does not take the store down.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "core/error.h"
#include "dist/store.h"
#include "tests/dist/store_fixture.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::dist;
using namespace std::chrono_literals;

namespace {

using test::store_options;

Bytes bytes(const std::string& text) { return Bytes(text.begin(), text.end()); }

// A port nobody listens at (bound by the system, then released).
int unused_port() {
  const Fd socket = listen_tcp(0);
  return bound_port(socket);
}

}  // namespace

TEST_CASE("set, get and overwrite of binary values, empty included") {
  TcpStore store(store_options(0, 1, 0));
  CHECK(store.port() > 0);
  const Bytes binary = {0, 255, 0, 7};
  store.set("k", binary);
  CHECK(store.get("k") == binary);
  store.set("k", bytes("second"));
  CHECK(store.get("k") == bytes("second"));
  store.set("empty", {});
  CHECK(store.get("empty").empty());
}

TEST_CASE("all_gather and broadcast_from_rank0 across four threads") {
  TcpStore rank0(store_options(0, 4, 0));
  const Bytes id = [] {
    Bytes out(128);
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(i * 7 + 1);
    return out;
  }();
  std::vector<std::vector<Bytes>> gathered(4);
  std::vector<Bytes> ids(4);
  const auto run = [&](TcpStore& store) {
    gathered[static_cast<size_t>(store.rank())] = all_gather(store, "join", bytes("rank" + std::to_string(store.rank())));
    ids[static_cast<size_t>(store.rank())] = broadcast_from_rank0(store, "nccl_unique_id", store.rank() == 0 ? id : Bytes{});
  };
  std::vector<std::thread> others;
  for (int r = 1; r < 4; ++r)
    others.emplace_back([&, r] {
      TcpStore store(store_options(r, 4, rank0.port()));
      run(store);
    });
  run(rank0);
  for (auto& t : others) t.join();
  for (int r = 0; r < 4; ++r) {
    CAPTURE(r);
    CHECK(gathered[static_cast<size_t>(r)] == std::vector<Bytes>{bytes("rank0"), bytes("rank1"), bytes("rank2"), bytes("rank3")});
    CHECK(ids[static_cast<size_t>(r)] == id);
  }
}

TEST_CASE("get blocks until another rank sets the key") {
  TcpStore rank0(store_options(0, 2, 0));
  Bytes got;
  std::thread reader([&] {
    TcpStore rank1(store_options(1, 2, rank0.port()));
    got = rank1.get("late");
  });
  std::this_thread::sleep_for(50ms);
  CHECK(got.empty());
  rank0.set("late", bytes("value"));
  reader.join();
  CHECK(got == bytes("value"));
}

TEST_CASE("ranks in forked processes meet rank 0 through the store") {
  const int port = unused_port();
  std::vector<pid_t> children;
  for (int r = 1; r < 3; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 3;
      try {  // connects before rank 0 listens: the client retries
        TcpStore store(store_options(r, 3, port));
        const auto all = all_gather(store, "join", bytes(std::to_string(r * 10)));
        const bool ok = all == std::vector<Bytes>{bytes("0"), bytes("10"), bytes("20")} &&
                        broadcast_from_rank0(store, "id", {}) == bytes("the id");
        code = ok ? 0 : 1;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "forked rank %d: %s\n", r, e.what());
        code = 2;
      }
      ::_exit(code);
    }
    children.push_back(pid);
  }
  std::this_thread::sleep_for(30ms);
  {
    TcpStore rank0(store_options(0, 3, port));
    CHECK(all_gather(rank0, "join", bytes("0")) == std::vector<Bytes>{bytes("0"), bytes("10"), bytes("20")});
    broadcast_from_rank0(rank0, "id", bytes("the id"));
    for (const pid_t pid : children) {  // keep serving until both have exited
      int status = 0;
      REQUIRE(::waitpid(pid, &status, 0) == pid);
      CHECK(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
    }
  }
}

TEST_CASE("a rendezvous timeout names the ranks that did not join") {
  TcpStore rank0(store_options(0, 4, 0, 150ms));
  std::string rank1_error;
  std::thread rank1([&] {
    TcpStore store(store_options(1, 4, rank0.port(), 150ms));
    rank1_error = test::thrown_message<DistributedError>([&] { all_gather(store, "join", {}); });
  });
  CHECK(test::thrown_message<DistributedError>([&] { all_gather(rank0, "join", {}); }) ==
        "TcpStore: rank 0 waited 150 ms for 'join' from all 4 ranks; missing rank(s): 2, 3");
  rank1.join();
  CHECK(rank1_error == "TcpStore: rank 1 waited 150 ms for 'join' from all 4 ranks; missing rank(s): 2, 3");
}

TEST_CASE("a rank waiting for rank 0's broadcast and a plain wait time out with what is missing") {
  TcpStore rank0(store_options(0, 2, 0, 100ms));
  TcpStore rank1(store_options(1, 2, rank0.port(), 100ms));
  CHECK(test::thrown_message<DistributedError>([&] { broadcast_from_rank0(rank1, "nccl_unique_id", {}); }) ==
        "TcpStore: rank 1 waited 100 ms for 'nccl_unique_id' from rank 0; missing rank(s): 0");
  rank0.set("a", {});
  CHECK(test::thrown_message<DistributedError>([&] { rank1.wait({"a", "b"}); }) ==
        "TcpStore: rank 1 waited 100 ms for 'a', 'b'; still not set: 'b'");
  CHECK(test::thrown_message<DistributedError>([&] { rank1.get("c"); }) ==
        "TcpStore: rank 1 waited 100 ms for 'c'; still not set: 'c'");
}

TEST_CASE("a rank that finds no store gives up at its timeout naming rank 0's address") {
  const int port = unused_port();
  CHECK(test::thrown_message<DistributedError>([&] { TcpStore(store_options(2, 3, port, 100ms)); }) ==
        "TcpStore: rank 2 could not connect to the store of rank 0 at 127.0.0.1:" + std::to_string(port) +
            " before the timeout (last error: Connection refused)");
}

TEST_CASE("a request after rank 0's store is gone fails naming the store") {
  auto rank0 = std::make_unique<TcpStore>(store_options(0, 2, 0, 200ms));
  const int port = rank0->port();
  TcpStore rank1(store_options(1, 2, port, 200ms));
  rank0.reset();
  const std::string message = test::thrown_message<DistributedError>([&] { rank1.set("k", {}); });
  CHECK(message.starts_with("TcpStore: "));
  CHECK(message.find("the store of rank 0 at 127.0.0.1:" + std::to_string(port)) != std::string::npos);
}

TEST_CASE("a client sending garbage loses its connection, an absurd timeout is clamped; the store keeps serving") {
  TcpStore rank0(store_options(0, 2, 0, 1000ms));
  const auto deadline = Clock::now() + 1s;
  {
    const Fd rogue = connect_tcp("127.0.0.1", rank0.port(), deadline, "a test");
    const uint8_t huge[8] = {0, 0, 0, 0, 0, 0, 0, 1};  // a frame of 2^56 bytes
    send_all(rogue, huge, sizeof huge, "the store");
    uint8_t byte;
    CHECK_FALSE(recv_all(rogue, &byte, 1, deadline, "the store", /*eof_ok=*/true));  // hung up on
    const Fd truncated = connect_tcp("127.0.0.1", rank0.port(), deadline, "a test");
    const uint8_t frame[] = {2, 0, 0, 0, 0, 0, 0, 0, 3, 0xff};  // a wait with a cut-off key count
    send_all(truncated, frame, sizeof frame, "the store");
    CHECK_FALSE(recv_all(truncated, &byte, 1, deadline, "the store", /*eof_ok=*/true));
  }
  {
    // A wait of 2^64 - 1 ms (clamped by the server, not wrapped into the past) for a key that
    // is set 50 ms later is answered once it is set, with nothing missing.
    const Fd client = connect_tcp("127.0.0.1", rank0.port(), deadline, "a test");
    const uint8_t frame[] = {22, 0, 0, 0, 0, 0, 0, 0,                          // payload: 22 bytes
                             3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // wait, timeout
                             1, 0, 0, 0, 5, 0, 0, 0, 'l', 'a', 't', 'e', 'r'};
    send_all(client, frame, sizeof frame, "the store");
    std::this_thread::sleep_for(50ms);
    rank0.set("later", {});
    uint8_t reply[12];
    REQUIRE(recv_all(client, reply, sizeof reply, deadline, "the store"));
    CHECK(std::vector<uint8_t>(reply, reply + 12) == std::vector<uint8_t>{4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  }
  TcpStore rank1(store_options(1, 2, rank0.port(), 1000ms));
  rank1.set("still", bytes("works"));
  CHECK(rank0.get("still") == bytes("works"));
}
