// Allocator registry and the host memory backing.
#include "core/allocator.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/error.h"

namespace tg {

namespace {

class HostBacking final : public MemoryBacking {
 public:
  explicit HostBacking(size_t capacity) : capacity_(capacity) {}

  void* allocate(size_t nbytes) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (nbytes > capacity_ - used_) return nullptr;
    void* ptr = std::aligned_alloc(alloc_constants::kMinBlockSize, nbytes);
    if (ptr != nullptr) used_ += nbytes;
    return ptr;
  }
  void release(void* ptr, size_t nbytes) override {
    std::lock_guard<std::mutex> lock(mutex_);
    std::free(ptr);
    used_ -= nbytes;
  }
  std::optional<Info> info() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (capacity_ == SIZE_MAX) return std::nullopt;
    return Info{capacity_, capacity_ - used_};
  }
  void fill(void* ptr, size_t nbytes, uint8_t byte) override { std::memset(ptr, byte, nbytes); }
  std::string device_name() const override { return "cpu"; }

 private:
  const size_t capacity_;
  size_t used_ = 0;
  mutable std::mutex mutex_;
};

bool caching_enabled() {
  const char* value = std::getenv("TAPEGRAD_NO_CACHING");
  return value == nullptr || std::strcmp(value, "") == 0 || std::strcmp(value, "0") == 0;
}

}  // namespace

std::unique_ptr<MemoryBacking> make_host_backing(size_t capacity) {
  return std::make_unique<HostBacking>(capacity);
}

CachingAllocator& allocator_for(Device device) {
  // Allocators live until the process ends: tensors held by static objects may be freed after
  // main returns, and CUDA memory must not be released during driver shutdown.
  static CachingAllocator* const cpu = new CachingAllocator(make_host_backing(), caching_enabled());
  if (device.is_cpu()) return *cpu;
  check_device_usable(device);
#if TG_WITH_CUDA
  static std::mutex mutex;
  static std::vector<CachingAllocator*> cuda(static_cast<size_t>(cuda_device_count()), nullptr);
  std::lock_guard<std::mutex> lock(mutex);
  CachingAllocator*& slot = cuda[static_cast<size_t>(device.index)];
  if (slot == nullptr) slot = new CachingAllocator(make_cuda_backing(device.index), caching_enabled());
  return *slot;
#else
  TG_THROW(InternalError, "unreachable: CUDA device accepted in a build without CUDA");
#endif
}

}  // namespace tg
