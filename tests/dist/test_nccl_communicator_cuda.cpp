// The NCCL communicator on the GPU machine: one rank (all-reduce and broadcast leave the
// tensor as it is; argument errors), two ranks in two threads when two GPUs are visible
// (average, sum, broadcast from rank 1), and a rank whose peer never joins: it gives up at its
// timeout with a DistributedError and an aborted communicator instead of hanging.
#include <doctest/doctest.h>

#include <thread>

#include "core/error.h"
#include "dist/cuda/nccl_communicator.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::dist;
using namespace std::chrono_literals;

TEST_CASE("one rank: all-reduce and broadcast keep the values; bad tensors are refused") {
  NcclCommunicator comm(make_nccl_unique_id(), 0, 1, 0, 20000ms);
  const Tensor t = from_vector<float>({1, 2, 3}, {3}, Device::cuda(0));
  comm.all_reduce(t, ReduceOp::average, nullptr);
  comm.all_reduce(t, ReduceOp::sum, nullptr);
  comm.broadcast(t, 0, nullptr);
  comm.synchronize(nullptr, "the one-rank collectives");
  CHECK(t.to_vector<float>() == std::vector<float>{1, 2, 3});
  const Tensor b = t.to(DType::bf16);
  comm.all_reduce(b, ReduceOp::average, nullptr);
  CHECK(b.to(DType::f32).to_vector<float>() == std::vector<float>{1, 2, 3});
  CHECK(test::thrown_message<TypeError>([&] { comm.all_reduce(t.to(DType::i64), ReduceOp::average, nullptr); }) ==
        "NCCL rank 0 of 1 on cuda:0: all_reduce average expects a floating dtype (f32, f64, bf16), got i64");
  CHECK(test::thrown_message<TypeError>([&] { comm.all_reduce(t.to(Device::cpu()), ReduceOp::sum, nullptr); }) ==
        "NCCL rank 0 of 1 on cuda:0: all_reduce expects a tensor on cuda:0, got one on cpu");
  const Tensor square = from_vector<float>({1, 2, 3, 4}, {2, 2}, Device::cuda(0));
  CHECK(test::thrown_message<ValueError>([&] { comm.broadcast(square.raw_transpose(0, 1), 0, nullptr); }) ==
        "NCCL rank 0 of 1 on cuda:0: broadcast expects a contiguous tensor, got shape [2, 2] with strides that are "
        "not contiguous");
  CHECK(test::thrown_message<ValueError>([&] { comm.broadcast(t, 1, nullptr); }) ==
        "NCCL rank 0 of 1 on cuda:0: broadcast root must be in [0, 1), got 1");
  comm.abort();
  CHECK(comm.aborted());
  CHECK(test::thrown_message<DistributedError>([&] { comm.all_reduce(t, ReduceOp::sum, nullptr); }) ==
        "NCCL rank 0 of 1 on cuda:0: all_reduce on an aborted communicator");
}

TEST_CASE("two ranks on two GPUs: average, sum and broadcast") {
  if (cuda_device_count() < 2) {
    MESSAGE("fewer than 2 GPUs: the two-rank test is not run");
    return;
  }
  const NcclUniqueId id = make_nccl_unique_id();
  std::vector<std::vector<float>> averaged(2), summed(2), broadcast(2);
  const auto rank = [&](int r) {
    NcclCommunicator comm(id, r, 2, r, 20000ms);
    const float k = static_cast<float>(r + 1);
    const Tensor a = from_vector<float>({k, 2 * k, 3 * k}, {3}, Device::cuda(r));
    const Tensor s = a.clone(), b = a.clone();
    comm.all_reduce(a, ReduceOp::average, nullptr);
    comm.all_reduce(s, ReduceOp::sum, nullptr);
    comm.broadcast(b, 1, nullptr);
    comm.synchronize(nullptr, "the two-rank collectives");
    averaged[static_cast<size_t>(r)] = a.to_vector<float>();
    summed[static_cast<size_t>(r)] = s.to_vector<float>();
    broadcast[static_cast<size_t>(r)] = b.to_vector<float>();
  };
  std::thread other(rank, 1);
  rank(0);
  other.join();
  for (size_t r = 0; r < 2; ++r) {
    CAPTURE(r);
    CHECK(averaged[r] == std::vector<float>{1.5f, 3, 4.5f});
    CHECK(summed[r] == std::vector<float>{3, 6, 9});
    CHECK(broadcast[r] == std::vector<float>{2, 4, 6});
  }
}

TEST_CASE("a rank whose peer never joins gives up at its timeout with an aborted communicator") {
  const auto start = std::chrono::steady_clock::now();
  CHECK(test::thrown_message<DistributedError>([] { NcclCommunicator(make_nccl_unique_id(), 0, 2, 0, 2000ms); }) ==
        "NCCL rank 0 of 2 on cuda:0: joining the communicator of 2 ranks did not complete within 2000 ms; "
        "communicator aborted (another rank failed, stopped or never joined)");
  CHECK(std::chrono::steady_clock::now() - start < 20s);
}
