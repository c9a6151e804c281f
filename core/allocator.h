// The per-device allocator registry: one CachingAllocator per device, created on first use.
// Setting the environment variable TAPEGRAD_NO_CACHING=1 before the first allocation makes
// every allocator pass each request straight to the device (cudaMalloc/cudaFree or the host
// heap), for debugging with memory checkers; statistics are kept either way.
#pragma once

#include "core/caching_allocator.h"
#include "core/device.h"

namespace tg {

CachingAllocator& allocator_for(Device device);

// Shorthands for allocator_for(device).stats() and friends.
inline MemoryStats memory_stats(Device device) { return allocator_for(device).stats(); }
inline void reset_peak_memory_stats(Device device) { allocator_for(device).reset_peak_stats(); }
inline void empty_cache(Device device) { allocator_for(device).empty_cache(); }

#if TG_WITH_CUDA
std::unique_ptr<MemoryBacking> make_cuda_backing(int device_index);
#endif

}  // namespace tg
