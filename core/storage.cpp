// Storage allocation and release through the device's caching allocator.
#include "core/storage.h"

#include "core/allocator.h"

namespace tg {

Storage::Storage(size_t nbytes, Device device)
    : nbytes_(nbytes), device_(device), allocator_(&allocator_for(device)) {
  data_ = allocator_->allocate(nbytes);
}

Storage::~Storage() { allocator_->deallocate(data_); }

}  // namespace tg
