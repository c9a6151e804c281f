// CudaGraph: capture on the graph's own stream into a private allocator pool, instantiate, replay.
#include "core/cuda/graph.h"

#include <exception>
#include <string>

#include "core/allocator.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "core/side_work.h"

namespace tg {

RelaxedCaptureMode::RelaxedCaptureMode() { TG_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode_)); }
RelaxedCaptureMode::~RelaxedCaptureMode() { (void)cudaThreadExchangeStreamCaptureMode(&mode_); }

CudaGraph::CudaGraph(Device device) : device_(device) {
  TG_CHECK(device.is_cuda(), ValueError, "CudaGraph: expected a CUDA device, got ", device.str());
}

CudaGraph::~CudaGraph() {
  // Destructors must not throw: the statuses of the destroy calls are not checked.
  DeviceGuard guard(device_.index);
  if (exec_) (void)cudaGraphExecDestroy(exec_);
  if (graph_) (void)cudaGraphDestroy(graph_);
  if (stream_) {
    (void)cudaStreamSynchronize(stream_);  // a replay may still be running
    (void)cudaStreamDestroy(stream_);
  }
  if (pool_) allocator_for(device_).release_private_pool(pool_);
}

void CudaGraph::capture(const std::function<void()>& body) {
  TG_INTERNAL_ASSERT(!captured(), "CudaGraph::capture: already captured");
  DeviceGuard guard(device_.index);
  CachingAllocator& allocator = allocator_for(device_);
  if (!stream_) TG_CUDA_CHECK(cudaStreamCreate(&stream_));  // blocking: ordered with the legacy stream
  if (!pool_) pool_ = allocator.create_private_pool();
  // Side work forked outside the capture cannot be joined inside it (core/side_work.h).
  join_side_work(device_);
  // The pool cannot reuse blocks cached outside it: give those segments back first, so that the
  // graph's memory replaces the eager steps' cache instead of adding to it.
  allocator.empty_cache();
  std::exception_ptr failure;
  cudaGraph_t graph = nullptr;
  cudaError_t end = cudaSuccess;
  {
    const StreamGuard on_stream(stream_);
    allocator.begin_private_pool(pool_);
    TG_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      body();
      join_side_work(device_);  // a capture must end with every forked stream joined
    } catch (...) {
      failure = std::current_exception();
      try {
        join_side_work(device_);  // best effort: the capture has failed already, and that is reported
      } catch (...) {
      }
    }
    end = cudaStreamEndCapture(stream_, &graph);
    allocator.end_private_pool();
  }
  if (failure || end != cudaSuccess) {
    if (graph) (void)cudaGraphDestroy(graph);
    const std::string reason = end != cudaSuccess ? cudaGetErrorString(end) : "the step threw";
    (void)cudaGetLastError();  // clear the sticky capture error
    constexpr const char* kAdvice =
        " — a host synchronisation, a copy to the host or work on another stream inside the step cannot be "
        "captured; run without CUDA graphs";
    try {
      if (failure) std::rethrow_exception(failure);
    } catch (const Error& e) {
      TG_THROW(BackendError, "CUDA graph capture failed (", reason, "): ", e.what(), kAdvice);
    }
    TG_THROW(BackendError, "CUDA graph capture failed: ", reason, kAdvice);
  }
  graph_ = graph;
  TG_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
}

void CudaGraph::replay() {
  TG_INTERNAL_ASSERT(captured(), "CudaGraph::replay: nothing captured");
  DeviceGuard guard(device_.index);
  TG_CUDA_CHECK(cudaGraphLaunch(exec_, stream_));
}

}  // namespace tg
