// SideWork: the per-device side stream, its fork and join events and what a pending section holds.
#include "core/side_work.h"

#include "core/error.h"

#if TG_WITH_CUDA
#include <cuda_runtime.h>

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

#if TG_WITH_CUDA

namespace {

struct SideState {
  cudaStream_t stream = nullptr;
  cudaEvent_t forked = nullptr;    // recorded on the current stream at a fork
  cudaEvent_t finished = nullptr;  // recorded on the side stream at a section's end
  bool open = false;               // a section is running (sections do not nest)
  bool pending = false;            // a finished section is not joined yet
  std::string failure;             // why recording `finished` failed (reported by the join)
  std::vector<Tensor> held;
};

// One state per device for this thread (streams, like the current stream, are per thread).
SideState& state_for(int device) {
  thread_local std::map<int, SideState> states;
  SideState& state = states[device];
  if (state.stream == nullptr) {
    const RelaxedCaptureMode relaxed;  // the first section may come inside a capture
    int least = 0, greatest = 0;
    TG_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    TG_CUDA_CHECK(cudaStreamCreateWithPriority(&state.stream, cudaStreamNonBlocking, greatest));
    TG_CUDA_CHECK(cudaEventCreateWithFlags(&state.forked, cudaEventDisableTiming));
    TG_CUDA_CHECK(cudaEventCreateWithFlags(&state.finished, cudaEventDisableTiming));
  }
  return state;
}

}  // namespace

SideWork::SideWork(Device device, bool enabled) {
  if (!enabled || !device.is_cuda()) return;
  DeviceGuard guard(device.index);
  SideState& state = state_for(device.index);
  TG_INTERNAL_ASSERT(!state.open, "SideWork: side sections do not nest");
  join_side_work(device);
  const cudaStream_t current = current_stream();
  TG_CUDA_CHECK(cudaEventRecord(state.forked, current));
  TG_CUDA_CHECK(cudaStreamWaitEvent(state.stream, state.forked, 0));
  state.open = true;
  device_ = device.index;
  previous_stream_ = reinterpret_cast<uintptr_t>(current);
  current_stream_slot() = state.stream;
}

SideWork::~SideWork() {
  if (!forked()) return;
  current_stream_slot() = reinterpret_cast<cudaStream_t>(previous_stream_);
  DeviceGuard guard(device_);
  SideState& state = state_for(device_);
  state.open = false;
  state.pending = true;
  // A destructor cannot throw: a failed record is reported by the next join.
  const cudaError_t status = cudaEventRecord(state.finished, state.stream);
  if (status != cudaSuccess) state.failure = cudaGetErrorString(status);
}

void SideWork::hold(const Tensor& tensor) {
  if (forked()) state_for(device_).held.push_back(tensor);
}

void join_side_work(Device device) {
  if (!device.is_cuda()) return;
  DeviceGuard guard(device.index);
  SideState& state = state_for(device.index);
  if (!state.pending) return;
  state.pending = false;
  if (!state.failure.empty()) {
    const std::string failure = std::exchange(state.failure, {});
    (void)cudaStreamSynchronize(state.stream);  // before the held tensors' memory can be reused
    state.held.clear();
    TG_THROW(BackendError, "side stream of cuda:", device.index, ": recording the end of its work failed: ", failure);
  }
  TG_CUDA_CHECK(cudaStreamWaitEvent(current_stream(), state.finished, 0));
  state.held.clear();  // the current stream's later work runs after the side work that read them
}

#else

SideWork::SideWork(Device, bool) {}
SideWork::~SideWork() = default;
void SideWork::hold(const Tensor&) {}
void join_side_work(Device) {}

#endif

}  // namespace tg
