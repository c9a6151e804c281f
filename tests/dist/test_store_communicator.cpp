// The CPU communicator over the TcpStore: all-reduce (average and sum) and broadcast across
// three ranks in threads with exact expected values, the reduction in rank order (the same bits
// on every rank), a tensor sent in pieces, the store left holding at most the last collective,
// and a rank that never answers named in the timeout, after which the communicator is aborted.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <thread>

#include "core/error.h"
#include "dist/store_communicator.h"
#include "tests/dist/store_fixture.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::dist;
using namespace std::chrono_literals;

namespace {

// Runs `body(comm)` on every rank of a `world`-rank job, one thread per rank.
void run_ranks(int world, const std::function<void(StoreCommunicator&)>& body) {
  TcpStore store0(test::store_options(0, world, 0));
  std::vector<std::thread> others;
  for (int r = 1; r < world; ++r)
    others.emplace_back([&, r] {
      TcpStore store(test::store_options(r, world, store0.port()));
      StoreCommunicator comm(store);
      body(comm);
    });
  StoreCommunicator comm0(store0);
  body(comm0);
  for (auto& t : others) t.join();
}

}  // namespace

TEST_CASE("three ranks: average, sum and broadcast give the exact values on every rank") {
  std::vector<std::vector<float>> averaged(3), broadcast(3);
  std::vector<std::vector<double>> summed(3);
  std::vector<std::vector<int64_t>> counts(3);
  run_ranks(3, [&](StoreCommunicator& comm) {
    const auto r = static_cast<size_t>(comm.rank());
    const float k = static_cast<float>(comm.rank() + 1);
    const Tensor a = from_vector<float>({k, 2 * k, 3 * k}, {3});
    const Tensor s = from_vector<double>({0.5 * k, -k}, {2});
    const Tensor c = from_vector<int64_t>({comm.rank(), 10}, {2});
    const Tensor b = from_vector<float>({k, k}, {2});
    comm.all_reduce(a, ReduceOp::average);
    comm.all_reduce(s, ReduceOp::sum);
    comm.all_reduce(c, ReduceOp::sum);
    comm.broadcast(b, 2);
    comm.wait();
    comm.synchronize("the test's collectives");
    averaged[r] = a.to_vector<float>();
    summed[r] = s.to_vector<double>();
    counts[r] = c.to_vector<int64_t>();
    broadcast[r] = b.to_vector<float>();
  });
  for (size_t r = 0; r < 3; ++r) {
    CAPTURE(r);
    CHECK(averaged[r] == std::vector<float>{2, 4, 6});
    CHECK(summed[r] == std::vector<double>{3, -6});
    CHECK(counts[r] == std::vector<int64_t>{3, 30});
    CHECK(broadcast[r] == std::vector<float>{3, 3});
  }
}

TEST_CASE("the sum is taken in rank order, so every rank gets the same bits") {
  // In f32, (1e8 + 1) - 1e8 = 0 (1 is below 1e8's spacing of 8), while 1e8 - 1e8 + 1 = 1.
  std::vector<float> result(3);
  run_ranks(3, [&](StoreCommunicator& comm) {
    const float mine[] = {1e8f, 1.0f, -1e8f};
    const Tensor t = from_vector<float>({mine[comm.rank()]}, {1});
    comm.all_reduce(t, ReduceOp::sum);
    result[static_cast<size_t>(comm.rank())] = t.to_vector<float>()[0];
  });
  CHECK(result == std::vector<float>{0, 0, 0});
}

TEST_CASE("a tensor above 16 MiB travels in pieces; the store keeps only the last collective") {
  constexpr int64_t kCount = (int64_t{17} << 20) / 4;  // 17 MiB of f32: two pieces
  std::vector<int> correct(2);
  int port = 0;
  std::vector<std::string> left;
  {
    TcpStore store0(test::store_options(0, 2, 0));
    port = store0.port();
    std::thread other([&] {
      TcpStore store(test::store_options(1, 2, port));
      StoreCommunicator comm(store);
      const Tensor t = full({kCount}, 3.0, DType::f32);
      comm.all_reduce(t, ReduceOp::average);
      const std::vector<float> v = t.to_vector<float>();
      correct[1] = std::all_of(v.begin(), v.end(), [](float x) { return x == 2; });
    });
    StoreCommunicator comm(store0);
    const Tensor t = full({kCount}, 1.0, DType::f32);
    comm.all_reduce(t, ReduceOp::average);
    const std::vector<float> v = t.to_vector<float>();
    correct[0] = std::all_of(v.begin(), v.end(), [](float x) { return x == 2; });
    other.join();
    // Collective 0 (the first piece) was erased once collective 1 completed; 1 is still there.
    TcpStore probe(test::store_options(1, 2, port, 200ms));
    left = probe.missing_after_wait({"tapegrad/collective/0/0", "tapegrad/collective/0/1", "tapegrad/collective/1/0",
                                     "tapegrad/collective/1/1"});
  }
  CHECK(correct == std::vector<int>{1, 1});
  CHECK(left == std::vector<std::string>{"tapegrad/collective/0/0", "tapegrad/collective/0/1"});
}

TEST_CASE("a rank that never answers is named at the timeout; the communicator is then aborted") {
  TcpStore store0(test::store_options(0, 2, 0, 300ms));
  std::atomic<bool> done = false;
  std::thread silent([&] {
    TcpStore store(test::store_options(1, 2, store0.port()));
    while (!done) std::this_thread::sleep_for(10ms);  // joined the store, never reduces
  });
  StoreCommunicator comm(store0);
  const Tensor t = from_vector<float>({1, 2, 3}, {3});
  const auto start = std::chrono::steady_clock::now();
  CHECK(test::thrown_message<DistributedError>([&] { comm.all_reduce(t, ReduceOp::average); }) ==
        "CPU communicator rank 0 of 2: all_reduce (3 f32) of collective 0: TcpStore: rank 0 waited 300 ms for "
        "'tapegrad/collective/0' from all 2 ranks; missing rank(s): 1");
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(test::thrown_message<DistributedError>([&] { comm.broadcast(t, 0); }) ==
        "CPU communicator rank 0 of 2: broadcast on an aborted communicator");
  CHECK(test::thrown_message<DistributedError>([&] { comm.synchronize("step 3"); }) ==
        "CPU communicator rank 0 of 2: synchronize (step 3) on an aborted communicator");
  done = true;
  silent.join();
}

TEST_CASE("bad tensors are refused before any exchange") {
  TcpStore store(test::store_options(0, 1, 0));
  StoreCommunicator comm(store);
  CHECK(test::thrown_message<TypeError>([&] { comm.all_reduce(from_vector<int64_t>({1}, {1}), ReduceOp::average); }) ==
        "CPU communicator rank 0 of 1: all_reduce average expects a floating dtype (f32, f64), got i64");
  CHECK(test::thrown_message<TypeError>([&] { comm.all_reduce(from_vector<float>({1}, {1}).to(DType::bf16), ReduceOp::sum); }) ==
        "CPU communicator rank 0 of 1: all_reduce sum expects f32, f64, i32 or i64, got bf16");
  const Tensor square = from_vector<float>({1, 2, 3, 4}, {2, 2});
  CHECK(test::thrown_message<ValueError>([&] { comm.broadcast(square.raw_transpose(0, 1), 0); }) ==
        "CPU communicator rank 0 of 1: broadcast expects a contiguous tensor, got shape [2, 2] with strides that are "
        "not contiguous");
  CHECK(test::thrown_message<ValueError>([&] { comm.broadcast(square, 1); }) ==
        "CPU communicator rank 0 of 1: broadcast root must be in [0, 1), got 1");
  // One rank: the values stay as they are.
  comm.all_reduce(square, ReduceOp::average);
  CHECK(square.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
}
