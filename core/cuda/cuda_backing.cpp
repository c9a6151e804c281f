// The CUDA memory backing of the caching allocator: cudaMalloc/cudaFree on one device.
#include <cuda_runtime.h>

#include "core/allocator.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/graph.h"
#include "core/cuda/launch.h"

namespace tg {

namespace {

class CudaBacking final : public MemoryBacking {
 public:
  explicit CudaBacking(int device_index) : index_(device_index) {}

  void* allocate(size_t nbytes) override {
    DeviceGuard guard(index_);
    // cudaMalloc is "potentially unsafe" in a capture: a private pool's first segments are
    // allocated during one.
    const RelaxedCaptureMode relaxed;
    void* ptr = nullptr;
    const cudaError_t status = cudaMalloc(&ptr, nbytes);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // an OOM is reported by the allocator, after its retry
      return nullptr;
    }
    TG_CUDA_CHECK(status);
    return ptr;
  }
  void release(void* ptr, size_t) override {
    DeviceGuard guard(index_);
    const RelaxedCaptureMode relaxed;
    TG_CUDA_CHECK(cudaFree(ptr));
  }
  std::optional<Info> info() const override {
    DeviceGuard guard(index_);
    size_t free = 0, total = 0;
    TG_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    return Info{total, free};
  }
  void fill(void* ptr, size_t nbytes, uint8_t byte) override {
    DeviceGuard guard(index_);
    TG_CUDA_CHECK(cudaMemsetAsync(ptr, byte, nbytes, tg::current_stream()));
  }
  std::string device_name() const override { return "cuda:" + std::to_string(index_); }
  uintptr_t current_stream() const override { return reinterpret_cast<uintptr_t>(tg::current_stream()); }

 private:
  const int index_;
};

}  // namespace

std::unique_ptr<MemoryBacking> make_cuda_backing(int device_index) {
  return std::make_unique<CudaBacking>(device_index);
}

}  // namespace tg
