// Device-independent caching allocator with PyTorch's CUDACachingAllocator semantics
// (DESIGN.md §3): 512 B rounding; a small pool (requests <= 1 MiB) carved from 2 MiB segments;
// 20 MiB segments for requests in (1, 10) MiB; requests >= 10 MiB rounded up to 2 MiB; best
// fit by (private pool, stream, size, address); blocks split and merged inside a segment; on a backing
// failure all cached unsplit segments are released and the request retried once, then a typed
// OutOfMemoryError. Private pools (for CUDA graphs, as PyTorch's graph pools): while one is
// active, every allocation comes from segments of that pool only, and its blocks, freed or not,
// are never handed to anyone else until the pool is released — a captured graph replays with the
// addresses it captured. The memory itself comes from a MemoryBacking (host memory in CI,
// cudaMalloc on a GPU), so all of this logic is unit-tested without a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "core/memory_stats.h"

namespace tg {

// Where segments come from. allocate() returns nullptr when the memory is not available.
class MemoryBacking {
 public:
  struct Info {
    size_t total;  // capacity of the device (or of the simulated host budget)
    size_t free;   // what the device reports as free now
  };
  virtual ~MemoryBacking() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void release(void* ptr, size_t nbytes) = 0;
  virtual std::optional<Info> info() const = 0;
  // Sets `nbytes` at `ptr` to `byte` (ordered with the device's work; used for poisoning).
  virtual void fill(void* ptr, size_t nbytes, uint8_t byte) = 0;
  virtual std::string device_name() const = 0;
  // The stream the calling thread's work is queued on (0: the host, or CUDA's legacy stream).
  virtual uintptr_t current_stream() const { return 0; }
};

// Host memory (aligned to 512 B), optionally limited to `capacity` bytes so that tests can
// provoke out-of-memory conditions.
std::unique_ptr<MemoryBacking> make_host_backing(size_t capacity = SIZE_MAX);

namespace alloc_constants {
inline constexpr size_t kMinBlockSize = 512;            // every size rounds up to this
inline constexpr size_t kSmallSize = 1 << 20;           // largest request of the small pool
inline constexpr size_t kSmallBuffer = 2 << 20;         // small-pool segment size
inline constexpr size_t kLargeBuffer = 20 << 20;        // segment for (1, 10) MiB requests
inline constexpr size_t kMinLargeAlloc = 10 << 20;      // from here, segments fit the request
inline constexpr size_t kRoundLarge = 2 << 20;          // ... rounded up to 2 MiB
}  // namespace alloc_constants

class CachingAllocator {
 public:
  // caching=false sends every request straight to the backing (debugging); stats still count.
  CachingAllocator(std::unique_ptr<MemoryBacking> backing, bool caching = true);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Returns nullptr for nbytes == 0. Throws OutOfMemoryError when the backing cannot serve it.
  // The block belongs to `stream` (by default the backing's current stream): once freed it is
  // handed out again only for that stream, so its reuse is ordered after every use queued there.
  // Work on another stream that reads it must keep it allocated until that stream has been
  // joined back (as PyTorch's allocator requires without record_stream).
  void* allocate(size_t nbytes);
  void* allocate(size_t nbytes, uintptr_t stream);
  void deallocate(void* ptr);

  MemoryStats stats() const;
  void reset_peak_stats();
  void reset_accumulated_stats();
  // Returns every cached segment that holds no live block to the backing (the segments of live
  // private pools stay).
  void empty_cache();

  // Private pools. A new pool id; allocations between begin_private_pool(id) and
  // end_private_pool() come from that pool's own segments. release_private_pool(id) gives its
  // free segments back and lets the rest go as their blocks are freed. One pool is active at a
  // time; begin with another one active is an internal error.
  uint64_t create_private_pool();
  void begin_private_pool(uint64_t pool);
  void end_private_pool();
  void release_private_pool(uint64_t pool);
  std::string memory_summary() const;
  std::string device_name() const { return backing_->device_name(); }
  bool caching() const { return caching_; }
  // Test aid: while on, every block handed out is first filled with 0xFF bytes (NaN in every
  // floating dtype), so a kernel that leaves an output element unwritten is caught.
  void set_poison(bool poison);

  static size_t round_size(size_t nbytes);
  static size_t segment_size(size_t rounded);  // what a new segment for this request holds

 private:
  struct Block;
  struct BlockLess {
    bool operator()(const Block* a, const Block* b) const;
  };
  using BlockPool = std::set<Block*, BlockLess>;

  // Whose free blocks a request may take: the private pool being allocated from (0: none) and
  // the caller's stream (a private pool keeps its streams apart too, as a captured graph's
  // branches run concurrently).
  struct Owner {
    uintptr_t pool = 0;
    uintptr_t stream = 0;
    auto operator<=>(const Owner&) const = default;
  };
  Owner owner_for(uintptr_t stream) const;
  bool is_live_private(uintptr_t pool) const;
  Block* find_free_block(BlockPool& pool, size_t size, const Owner& owner);
  Block* allocate_segment(bool small, size_t size, const Owner& owner, bool is_retry);
  void release_segment(Block* block);
  void release_cached_segments();
  void* activate(Block* block, size_t size, size_t requested);
  void free_block(Block* block);
  size_t try_merge(Block* dst, Block* src, BlockPool& pool);
  BlockPool& pool_of(const Block* block);
  [[noreturn]] void throw_oom(size_t requested, size_t segment_bytes);

  template <class F>
  void for_stat_types(bool small, F&& f) {
    f(static_cast<size_t>(StatType::all));
    f(static_cast<size_t>(small ? StatType::small_pool : StatType::large_pool));
  }

  std::unique_ptr<MemoryBacking> backing_;
  const bool caching_;
  bool poison_ = false;
  mutable std::mutex mutex_;
  BlockPool small_pool_, large_pool_;
  std::unordered_map<void*, Block*> active_blocks_;
  MemoryStats stats_;
  uint64_t next_pool_ = 1;
  std::optional<uintptr_t> active_pool_;  // key of the private pool being allocated from
  std::set<uintptr_t> live_pools_;        // keys of the pools not released yet
};

}  // namespace tg
