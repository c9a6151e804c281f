// CachingAllocator: block pools, splitting/merging, segment management, statistics.
#include "core/caching_allocator.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace tg {

using namespace alloc_constants;

namespace {
// Private pool ids carry the top bit: none is 0, which means no pool.
constexpr uintptr_t kPrivatePoolBit = uintptr_t{1} << (sizeof(uintptr_t) * 8 - 1);
bool is_private_key(uintptr_t key) { return (key & kPrivatePoolBit) != 0; }
}  // namespace

struct CachingAllocator::Block {
  size_t size;            // bytes of this block
  size_t requested = 0;   // bytes the caller asked for (while allocated)
  Owner owner;            // the private pool (or none) and the stream it serves
  char* ptr;              // start of the block
  bool small;             // pool membership
  bool allocated = false;
  Block* prev = nullptr;  // neighbours inside the same segment
  Block* next = nullptr;

  bool is_split() const { return prev != nullptr || next != nullptr; }
};

bool CachingAllocator::BlockLess::operator()(const Block* a, const Block* b) const {
  if (a->owner != b->owner) return a->owner < b->owner;
  if (a->size != b->size) return a->size < b->size;
  return reinterpret_cast<uintptr_t>(a->ptr) < reinterpret_cast<uintptr_t>(b->ptr);
}

CachingAllocator::CachingAllocator(std::unique_ptr<MemoryBacking> backing, bool caching)
    : backing_(std::move(backing)), caching_(caching) {}

CachingAllocator::~CachingAllocator() {
  // Live blocks belong to tensors that outlive us only at process exit; release what is cached.
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_segments();
}

size_t CachingAllocator::round_size(size_t nbytes) {
  if (nbytes < kMinBlockSize) return kMinBlockSize;
  return kMinBlockSize * ((nbytes + kMinBlockSize - 1) / kMinBlockSize);
}

size_t CachingAllocator::segment_size(size_t rounded) {
  if (rounded <= kSmallSize) return kSmallBuffer;
  if (rounded < kMinLargeAlloc) return kLargeBuffer;
  return kRoundLarge * ((rounded + kRoundLarge - 1) / kRoundLarge);
}

CachingAllocator::BlockPool& CachingAllocator::pool_of(const Block* block) {
  return block->small ? small_pool_ : large_pool_;
}

CachingAllocator::Owner CachingAllocator::owner_for(uintptr_t stream) const { return {active_pool_.value_or(0), stream}; }

bool CachingAllocator::is_live_private(uintptr_t pool) const {
  return is_private_key(pool) && live_pools_.count(pool) > 0;
}

uint64_t CachingAllocator::create_private_pool() {
  std::lock_guard<std::mutex> lock(mutex_);
  const uintptr_t key = kPrivatePoolBit | next_pool_++;
  live_pools_.insert(key);
  stats_.private_pools.update(1);
  return key;
}

void CachingAllocator::begin_private_pool(uint64_t pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  TG_INTERNAL_ASSERT(!active_pool_, "begin_private_pool: another private pool is active");
  TG_INTERNAL_ASSERT(is_live_private(pool), "begin_private_pool: not a live private pool");
  active_pool_ = pool;
}

void CachingAllocator::end_private_pool() {
  std::lock_guard<std::mutex> lock(mutex_);
  active_pool_.reset();
}

void CachingAllocator::release_private_pool(uint64_t pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  TG_INTERNAL_ASSERT(active_pool_ != pool, "release_private_pool: the pool is active");
  if (live_pools_.erase(pool) == 0) return;
  stats_.private_pools.update(-1);
  release_cached_segments();  // its free whole segments; blocks still in use go when freed
}

void* CachingAllocator::allocate(size_t nbytes) { return allocate(nbytes, backing_->current_stream()); }

void* CachingAllocator::allocate(size_t nbytes, uintptr_t caller_stream) {
  if (nbytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  const Owner owner = owner_for(caller_stream);
  const size_t size = round_size(nbytes);
  const bool small = size <= kSmallSize;
  if (!caching_) {
    Block* block = allocate_segment(small, size, owner, /*is_retry=*/false);
    if (block == nullptr) throw_oom(nbytes, size);
    return activate(block, size, nbytes);
  }
  Block* block = find_free_block(small ? small_pool_ : large_pool_, size, owner);
  if (block == nullptr) {
    const size_t segment_bytes = segment_size(size);
    block = allocate_segment(small, segment_bytes, owner, /*is_retry=*/false);
    if (block == nullptr) {
      release_cached_segments();
      block = allocate_segment(small, segment_bytes, owner, /*is_retry=*/true);
    }
    if (block == nullptr) throw_oom(nbytes, segment_bytes);
  }
  return activate(block, size, nbytes);
}

CachingAllocator::Block* CachingAllocator::find_free_block(BlockPool& pool, size_t size,
                                                           const Owner& owner) {
  Block key{size, 0, owner, nullptr, false};
  auto it = pool.lower_bound(&key);
  if (it == pool.end() || (*it)->owner != owner) return nullptr;
  Block* block = *it;
  pool.erase(it);
  return block;
}

CachingAllocator::Block* CachingAllocator::allocate_segment(bool small, size_t size,
                                                            const Owner& owner, bool is_retry) {
  if (is_retry) ++stats_.num_alloc_retries;
  void* ptr = backing_->allocate(size);
  if (ptr == nullptr) return nullptr;
  ++stats_.num_device_alloc;
  for_stat_types(small, [&](size_t t) {
    stats_.segment[t].update(1);
    stats_.reserved_bytes[t].update(static_cast<int64_t>(size));
  });
  if (owner.pool != 0) stats_.private_pool_reserved_bytes.update(static_cast<int64_t>(size));
  return new Block{size, 0, owner, static_cast<char*>(ptr), small};
}

void CachingAllocator::release_segment(Block* block) {
  TG_INTERNAL_ASSERT(!block->is_split() && !block->allocated, "only whole free segments are released");
  backing_->release(block->ptr, block->size);
  ++stats_.num_device_free;
  if (block->owner.pool != 0) stats_.private_pool_reserved_bytes.update(-static_cast<int64_t>(block->size));
  for_stat_types(block->small, [&](size_t t) {
    stats_.segment[t].update(-1);
    stats_.reserved_bytes[t].update(-static_cast<int64_t>(block->size));
  });
  delete block;
}

void CachingAllocator::release_cached_segments() {
  for (BlockPool* pool : {&small_pool_, &large_pool_}) {
    for (auto it = pool->begin(); it != pool->end();) {
      Block* block = *it;
      if (block->is_split() || is_live_private(block->owner.pool)) {
        ++it;
        continue;
      }
      it = pool->erase(it);
      release_segment(block);
    }
  }
}

static bool should_split(size_t block_size, size_t size, bool small) {
  const size_t remaining = block_size - size;
  return small ? remaining >= kMinBlockSize : remaining > kSmallSize;
}

void* CachingAllocator::activate(Block* block, size_t size, size_t requested) {
  const bool already_split = block->is_split();
  if (caching_ && should_split(block->size, size, block->small)) {
    Block* remaining = block;
    block = new Block{size, 0, remaining->owner, remaining->ptr, remaining->small};
    block->prev = remaining->prev;
    if (block->prev) block->prev->next = block;
    block->next = remaining;
    remaining->prev = block;
    remaining->ptr += size;
    remaining->size -= size;
    pool_of(remaining).insert(remaining);
    for_stat_types(block->small, [&](size_t t) {
      if (already_split) {
        // An inactive piece of an already split segment shrinks by `size`.
        stats_.inactive_split_bytes[t].update(-static_cast<int64_t>(size));
      } else {
        // A whole segment becomes split: its remainder is a new inactive split block.
        stats_.inactive_split_bytes[t].update(static_cast<int64_t>(remaining->size));
        stats_.inactive_split[t].update(1);
      }
    });
  } else if (already_split) {
    for_stat_types(block->small, [&](size_t t) {
      stats_.inactive_split_bytes[t].update(-static_cast<int64_t>(block->size));
      stats_.inactive_split[t].update(-1);
    });
  }
  block->allocated = true;
  block->requested = requested;
  if (poison_) backing_->fill(block->ptr, block->size, 0xFF);
  active_blocks_.emplace(block->ptr, block);
  for_stat_types(block->small, [&](size_t t) {
    stats_.allocation[t].update(1);
    stats_.allocated_bytes[t].update(static_cast<int64_t>(block->size));
    stats_.active[t].update(1);
    stats_.active_bytes[t].update(static_cast<int64_t>(block->size));
    stats_.requested_bytes[t].update(static_cast<int64_t>(requested));
  });
  return block->ptr;
}

void CachingAllocator::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = active_blocks_.find(ptr);
  TG_INTERNAL_ASSERT(it != active_blocks_.end(), "deallocate of a pointer this allocator did not hand out");
  Block* block = it->second;
  active_blocks_.erase(it);
  block->allocated = false;
  const int64_t size = static_cast<int64_t>(block->size);
  const int64_t requested = static_cast<int64_t>(block->requested);
  for_stat_types(block->small, [&](size_t t) {
    stats_.allocation[t].update(-1);
    stats_.allocated_bytes[t].update(-size);
    stats_.active[t].update(-1);
    stats_.active_bytes[t].update(-size);
    stats_.requested_bytes[t].update(-requested);
  });
  if (!caching_) {
    release_segment(block);
    return;
  }
  free_block(block);
  // A whole free segment of a released private pool goes back at once: nobody can reuse it.
  if (block->owner.pool != 0 && !is_live_private(block->owner.pool) && !block->is_split()) {
    pool_of(block).erase(block);
    release_segment(block);
  }
}

void CachingAllocator::free_block(Block* block) {
  BlockPool& pool = pool_of(block);
  int64_t net_blocks = 0, net_bytes = 0;
  for (Block* candidate : {block->prev, block->next}) {
    const size_t subsumed = try_merge(block, candidate, pool);
    if (subsumed > 0) {
      net_blocks -= 1;
      net_bytes -= static_cast<int64_t>(subsumed);
    }
  }
  pool.insert(block);
  if (block->is_split()) {
    net_blocks += 1;
    net_bytes += static_cast<int64_t>(block->size);
  }
  for_stat_types(block->small, [&](size_t t) {
    stats_.inactive_split[t].update(net_blocks);
    stats_.inactive_split_bytes[t].update(net_bytes);
  });
}

size_t CachingAllocator::try_merge(Block* dst, Block* src, BlockPool& pool) {
  if (src == nullptr || src->allocated) return 0;
  if (dst->prev == src) {
    dst->ptr = src->ptr;
    dst->prev = src->prev;
    if (dst->prev) dst->prev->next = dst;
  } else {
    dst->next = src->next;
    if (dst->next) dst->next->prev = dst;
  }
  const size_t subsumed = src->size;
  dst->size += subsumed;
  pool.erase(src);
  delete src;
  return subsumed;
}

void CachingAllocator::throw_oom(size_t requested, size_t segment_bytes) {
  ++stats_.num_ooms;
  constexpr size_t all = static_cast<size_t>(StatType::all);
  const int64_t allocated = stats_.allocated_bytes[all].current;
  const int64_t reserved = stats_.reserved_bytes[all].current;
  std::string capacity = "unknown capacity";
  if (auto info = backing_->info()) {
    capacity = detail::concat("a total capacity of ", format_bytes(static_cast<int64_t>(info->total)),
                              " of which ", format_bytes(static_cast<int64_t>(info->free)), " is free");
  }
  TG_THROW(OutOfMemoryError, "out of memory on ", backing_->device_name(), ": tried to allocate ",
           format_bytes(static_cast<int64_t>(requested)), " (", requested, " bytes; a segment of ",
           segment_bytes, " bytes). The device has ", capacity, ". Of the memory in use, ",
           format_bytes(allocated), " is allocated by tapegrad and ", format_bytes(reserved - allocated),
           " is reserved by tapegrad but unallocated.");
}

void CachingAllocator::set_poison(bool poison) {
  std::lock_guard<std::mutex> lock(mutex_);
  poison_ = poison;
}

MemoryStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.reset_peak();
}

void CachingAllocator::reset_accumulated_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.reset_accumulated();
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_segments();
}

std::string CachingAllocator::memory_summary() const {
  return tg::memory_summary(stats(), backing_->device_name());
}

}  // namespace tg
