// Storage: one allocation from a device's caching allocator, shared by every tensor view of it.
#pragma once

#include <cstddef>
#include <memory>

#include "core/device.h"

namespace tg {

class CachingAllocator;

class Storage {
 public:
  Storage(size_t nbytes, Device device);  // memory from allocator_for(device)
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  CachingAllocator* allocator_;
};

}  // namespace tg
