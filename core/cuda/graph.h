// CUDA graphs of tapegrad work: the kernels a callable enqueues are captured once, on a stream
// of the graph's own and with a private pool of the device's caching allocator (its blocks keep
// the addresses the graph was captured with), then replayed with one launch. What the body must
// respect (docs/cuda-graphs.md): no host synchronisation or device-to-host copy, fixed shapes,
// inputs and outputs in tensors that outlive the graph, and per-step values (learning rate,
// step counters, random offsets) read from device memory rather than passed as kernel
// arguments.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>

#include "core/device.h"

namespace tg {

// cudaMalloc, cudaFree, cudaStreamCreate and the like are "potentially unsafe" calls that a
// thread capturing a CUDA graph may not make in its capture mode. Where they are needed during a
// capture (a private pool's first segments, the sampler's side stream), the thread's mode is
// relaxed for the guard's lifetime (as PyTorch's allocator does). Outside a capture this changes
// nothing.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode();
  ~RelaxedCaptureMode();
  RelaxedCaptureMode(const RelaxedCaptureMode&) = delete;
  RelaxedCaptureMode& operator=(const RelaxedCaptureMode&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
};

class CudaGraph {
 public:
  explicit CudaGraph(Device device);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Captures what `body` enqueues (nothing runs yet), after returning the device's free cached
  // segments (empty_cache: the graph's pool could not reuse them). A body that cannot be captured — a host
  // synchronisation, a copy to the host, work on another stream — fails with BackendError
  // naming the reason, after which the graph stays empty and the allocator as before.
  void capture(const std::function<void()>& body);
  // Runs the captured work on the graph's stream, ordered after the legacy stream's earlier work
  // and before its later work (the stream is a blocking one).
  void replay();
  bool captured() const { return exec_ != nullptr; }

 private:
  Device device_;
  cudaStream_t stream_ = nullptr;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  uint64_t pool_ = 0;  // the allocator's private pool; 0 before capture
};

}  // namespace tg
