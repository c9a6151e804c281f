// Side work (core/side_work.h) on cuda:0: its results once joined, held tensors kept allocated
// until the join (exact byte counts), a new section joining the oldest when every lane is busy,
// no-op sections on the CPU or when disabled, and side work captured into a CUDA graph as branches
// of the step.
#include <doctest/doctest.h>

#include "core/allocator.h"
#include "core/cuda/graph.h"
#include "core/side_work.h"
#include "core/tensor.h"

using namespace tg;

namespace {

const Device kCuda = Device::cuda(0);
constexpr int64_t kElements = 1 << 20;  // 4 MiB of f32: a whole large block, no rounding
constexpr int64_t kBytes = kElements * 4;

int64_t allocated(Device device) { return memory_stats(device).allocated_bytes[0].current; }

Tensor ramp() {
  std::vector<float> values(kElements);
  for (int64_t i = 0; i < kElements; ++i) values[static_cast<size_t>(i)] = static_cast<float>(i % 1000);
  return from_vector(values, {kElements}).to(kCuda);
}

}  // namespace

TEST_CASE("side work: joined results equal the current stream's; a held operand stays allocated until the join") {
  const Tensor input = ramp();
  const int64_t before = allocated(kCuda);
  Tensor result;
  {
    Tensor operand = input.clone();  // the current stream's
    SideWork side(kCuda, true);
    CHECK(side.forked());
    side.hold(operand);
    result = operand.clone();  // on the side stream
  }
  // The operand's last reference is gone, but the pending section still holds it.
  CHECK(allocated(kCuda) == before + 2 * kBytes);
  join_side_work(kCuda);
  CHECK(allocated(kCuda) == before + kBytes);
  CHECK(result.to_vector<float>() == input.to_vector<float>());
  join_side_work(kCuda);  // nothing pending: a no-op
  CHECK(allocated(kCuda) == before + kBytes);
}

TEST_CASE("side work: a section joins the oldest when every lane is pending; CPU and disabled sections are no-ops") {
  const Tensor input = ramp();
  const int64_t before = allocated(kCuda);
  std::vector<Tensor> copies;
  for (int section = 0; section < kSideLanes; ++section) {
    SideWork side(kCuda, true);
    side.hold(input.clone());
    copies.push_back(input.clone());
  }
  // Every lane pending: each holds its clone, next to the copies it made.
  CHECK(allocated(kCuda) == before + 2 * kSideLanes * kBytes);
  {
    SideWork side(kCuda, true);  // joins the oldest section only: its held clone is released
    CHECK(allocated(kCuda) == before + (2 * kSideLanes - 1) * kBytes);
  }
  join_side_work(kCuda);
  CHECK(allocated(kCuda) == before + kSideLanes * kBytes);
  for (const Tensor& copy : copies) CHECK(copy.to_vector<float>() == input.to_vector<float>());
  {
    SideWork off(kCuda, false), cpu(Device::cpu(), true);
    CHECK_FALSE(off.forked());
    CHECK_FALSE(cpu.forked());
    off.hold(input);
  }
  join_side_work(Device::cpu());
  CHECK(allocated(kCuda) == before + kSideLanes * kBytes);
}

TEST_CASE("side work inside a CUDA graph: captured as a branch, joined by the capture, redone by each replay") {
  const Tensor input = ramp(), output = zeros({kElements}, DType::f32, kCuda);
  CudaGraph graph(kCuda);
  graph.capture([&] {
    Tensor copy;
    {
      SideWork side(kCuda, true);
      side.hold(input);
      copy = input.clone();
    }
    join_side_work(kCuda);
    output.copy_(copy);
    SideWork unjoined(kCuda, true);  // left pending: the capture's end joins it
    (void)input.clone();
  });
  CHECK(output.to_vector<float>() == std::vector<float>(kElements, 0.0f));
  graph.replay();
  CHECK(output.to_vector<float>() == input.to_vector<float>());
}

TEST_CASE("side work: joining up to a ticket joins the older sections only") {
  const Tensor input = ramp();
  const int64_t before = allocated(kCuda);
  uint64_t first = 0, second = 0;
  {
    SideWork side(kCuda, true);
    side.hold(input.clone());
    first = side.ticket();
  }
  {
    SideWork side(kCuda, true);
    side.hold(input.clone());
    second = side.ticket();
  }
  CHECK(second == first + 1);
  CHECK(allocated(kCuda) == before + 2 * kBytes);
  join_side_work(kCuda, first);
  CHECK(allocated(kCuda) == before + kBytes);
  join_side_work(kCuda, first);  // joined already: nothing happens
  CHECK(allocated(kCuda) == before + kBytes);
  join_side_work(kCuda, second);
  CHECK(allocated(kCuda) == before);
  SideWork off(kCuda, false);
  CHECK(off.ticket() == 0);
}

TEST_CASE("side work lanes: a new number joins pending work first and is then used; out of range is refused") {
  const Tensor input = ramp();
  const int64_t before = allocated(kCuda);
  {
    SideWork side(kCuda, true);
    side.hold(input.clone());
  }
  CHECK(allocated(kCuda) == before + kBytes);
  set_side_work_lanes(2);
  for (int section = 0; section < 2; ++section) {
    SideWork side(kCuda, true);  // the first one joins the section of the old lanes
    side.hold(input.clone());
  }
  CHECK(allocated(kCuda) == before + 2 * kBytes);
  {
    SideWork side(kCuda, true);  // both lanes pending: joins the oldest
    CHECK(allocated(kCuda) == before + kBytes);
  }
  join_side_work(kCuda);
  set_side_work_lanes(kSideLanes);
  CHECK(allocated(kCuda) == before);
  CHECK_THROWS_WITH_AS(set_side_work_lanes(0), "side work lanes: expected 1 to 64, got 0", ValueError);
  CHECK(side_work_lanes() == kSideLanes);
}
