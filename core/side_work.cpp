// SideWork: the per-device side streams (lanes), their fork and join events and what pending sections hold.
#include "core/side_work.h"

#include "core/error.h"

#include <atomic>

#if TG_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/graph.h"
#include "core/cuda/launch.h"
#endif

namespace tg {

namespace {
std::atomic<int> g_side_lanes{kSideLanes};
std::atomic<bool> g_side_work_started{false};
}  // namespace

bool side_work_started() { return g_side_work_started.load(); }

void set_side_work_lanes(int lanes) {
  TG_CHECK(lanes >= 1 && lanes <= 64, ValueError, "side work lanes: expected 1 to 64, got ", lanes);
  g_side_lanes.store(lanes);
}

int side_work_lanes() { return g_side_lanes.load(); }

#if TG_WITH_CUDA

namespace {

// One lane of side work: a stream and what its pending section holds.
struct Lane {
  cudaStream_t stream = nullptr;
  cudaEvent_t finished = nullptr;  // recorded on the lane at its section's end
  std::vector<Tensor> held;
};

struct SideState {
  std::vector<Lane> lanes;         // side_work_lanes() of them, made as needed
  cudaEvent_t forked = nullptr;    // recorded on the current stream at a fork
  struct Pending {
    int lane;
    uint64_t ticket;
  };
  std::deque<Pending> pending;     // finished, unjoined sections, oldest (smallest ticket) first
  uint64_t last_ticket = 0;        // of the latest section forked
  size_t active = 0;               // lanes in use (the first `active` of `lanes`)
  int next = 0;                    // the lane the next section takes
  bool open = false;               // a section is running (sections do not nest)
  std::string failure;             // why recording a section's end failed (reported by the join)
};

// One state per device for this thread (streams, like the current stream, are per thread).
SideState& state_for(int device) {
  thread_local std::map<int, SideState> states;
  SideState& state = states[device];
  if (state.forked == nullptr) TG_CUDA_CHECK(cudaEventCreateWithFlags(&state.forked, cudaEventDisableTiming));
  return state;
}

// Makes the state's lanes the configured number; the caller has joined everything pending.
void resize_lanes(SideState& state, size_t lanes) {
  const RelaxedCaptureMode relaxed;  // the first section may come inside a capture
  int least = 0, greatest = 0;
  TG_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  while (state.lanes.size() < lanes) {
    Lane lane;
    TG_CUDA_CHECK(cudaStreamCreateWithPriority(&lane.stream, cudaStreamNonBlocking, greatest));
    TG_CUDA_CHECK(cudaEventCreateWithFlags(&lane.finished, cudaEventDisableTiming));
    state.lanes.push_back(std::move(lane));
  }
  // Fewer lanes: the extra streams stay made (for a later increase) but idle.
  state.active = lanes;
  state.next = 0;
}

// The current stream waits for the oldest pending section, whose held tensors are then released.
void join_oldest(SideState& state, int device) {
  const int index = state.pending.front().lane;
  state.pending.pop_front();
  Lane& lane = state.lanes[static_cast<size_t>(index)];
  if (!state.failure.empty()) {
    const std::string failure = std::exchange(state.failure, {});
    (void)cudaStreamSynchronize(lane.stream);  // before the held tensors' memory can be reused
    lane.held.clear();
    TG_THROW(BackendError, "side stream of cuda:", device, ": recording the end of its work failed: ", failure);
  }
  TG_CUDA_CHECK(cudaStreamWaitEvent(current_stream(), lane.finished, 0));
  lane.held.clear();  // the current stream's later work runs after the side work that read them
}

}  // namespace

SideWork::SideWork(Device device, bool enabled) {
  if (!enabled || !device.is_cuda()) return;
  DeviceGuard guard(device.index);
  SideState& state = state_for(device.index);
  TG_INTERNAL_ASSERT(!state.open, "SideWork: side sections do not nest");
  const auto lanes = static_cast<size_t>(side_work_lanes());
  if (state.active != lanes) {
    while (!state.pending.empty()) join_oldest(state, device.index);
    resize_lanes(state, lanes);
  }
  if (state.pending.size() == state.active) join_oldest(state, device.index);
  const int index = state.next;
  state.next = (state.next + 1) % static_cast<int>(state.active);
  // Lanes are taken in turn and joined oldest first, so the lane taken now has no pending section.
  TG_INTERNAL_ASSERT(std::none_of(state.pending.begin(), state.pending.end(),
                                 [&](const SideState::Pending& p) { return p.lane == index; }),
                     "SideWork: the next lane still has a pending section");
  const Lane& lane = state.lanes[static_cast<size_t>(index)];
  const cudaStream_t current = current_stream();
  TG_CUDA_CHECK(cudaEventRecord(state.forked, current));
  TG_CUDA_CHECK(cudaStreamWaitEvent(lane.stream, state.forked, 0));
  state.open = true;
  device_ = device.index;
  lane_ = index;
  ticket_ = ++state.last_ticket;
  g_side_work_started.store(true);
  previous_stream_ = reinterpret_cast<uintptr_t>(current);
  current_stream_slot() = lane.stream;
}

SideWork::~SideWork() {
  if (!forked()) return;
  current_stream_slot() = reinterpret_cast<cudaStream_t>(previous_stream_);
  DeviceGuard guard(device_);
  SideState& state = state_for(device_);
  state.open = false;
  state.pending.push_back({lane_, ticket_});
  // A destructor cannot throw: a failed record is reported by the next join.
  const Lane& lane = state.lanes[static_cast<size_t>(lane_)];
  const cudaError_t status = cudaEventRecord(lane.finished, lane.stream);
  if (status != cudaSuccess) state.failure = cudaGetErrorString(status);
}

void SideWork::hold(const Tensor& tensor) {
  if (forked()) state_for(device_).lanes[static_cast<size_t>(lane_)].held.push_back(tensor);
}

void join_side_work(Device device, uint64_t ticket) {
  if (!device.is_cuda() || ticket == 0) return;
  DeviceGuard guard(device.index);
  SideState& state = state_for(device.index);
  while (!state.pending.empty() && state.pending.front().ticket <= ticket) join_oldest(state, device.index);
}

#else

SideWork::SideWork(Device, bool) {}
SideWork::~SideWork() = default;
void SideWork::hold(const Tensor&) {}
void join_side_work(Device, uint64_t) {}

#endif

}  // namespace tg
