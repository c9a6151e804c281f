// CUDA graphs (core/cuda/graph.h): a captured body runs only when replayed, replays see the
// inputs' current values, allocations inside come from a private pool that stays reserved while
// the graph lives, and a body with a host synchronisation fails with a message saying why.
#include <doctest/doctest.h>

#include "core/allocator.h"
#include "core/cuda/graph.h"
#include "core/tensor.h"

using namespace tg;

TEST_CASE("CUDA graph: capture runs nothing, each replay redoes the captured copies on the current inputs") {
  const Device cuda = Device::cuda(0);
  const Tensor input = from_vector<float>({1, 2, 3}, {3}).to(cuda), output = zeros({3}, DType::f32, cuda);
  const int64_t pools_before = memory_stats(cuda).private_pools.current;
  {
    CudaGraph graph(cuda);
    graph.capture([&] {
      const Tensor scratch = input.clone();  // allocated in the graph's private pool
      output.copy_(scratch);
    });
    CHECK(graph.captured());
    CHECK(output.to_vector<float>() == std::vector<float>{0, 0, 0});  // captured, not run
    CHECK(memory_stats(cuda).private_pools.current == pools_before + 1);
    CHECK(memory_stats(cuda).private_pool_reserved_bytes.current >= 2 << 20);
    graph.replay();
    CHECK(output.to_vector<float>() == std::vector<float>{1, 2, 3});
    input.copy_(from_vector<float>({7, 8, 9}, {3}).to(cuda));
    graph.replay();
    CHECK(output.to_vector<float>() == std::vector<float>{7, 8, 9});
  }
  // The graph's pool is released with it.
  CHECK(memory_stats(cuda).private_pools.current == pools_before);
}

TEST_CASE("CUDA graph: a host synchronisation inside the body fails the capture, and says so") {
  const Device cuda = Device::cuda(0);
  const Tensor input = zeros({4}, DType::f32, cuda);
  CudaGraph graph(cuda);
  std::string message;
  try {
    graph.capture([&] { (void)input.to(Device::cpu()); });
  } catch (const BackendError& e) {
    message = e.what();
  }
  CHECK(message.rfind("CUDA graph capture failed", 0) == 0);
  CHECK(message.find("a host synchronisation, a copy to the host or work on another stream inside the step cannot "
                     "be captured; run without CUDA graphs") != std::string::npos);
  CHECK(!graph.captured());
  // The device is usable afterwards.
  CHECK(from_vector<float>({5}, {1}).to(cuda).to_vector<float>() == std::vector<float>{5});
}
