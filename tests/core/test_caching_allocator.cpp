// Caching allocator semantics and statistics, with exact numbers (issue 2). Built twice: on the
// host backing (CPU suite) and on cudaMalloc (CUDA suite); the pool logic must agree exactly.
#include <doctest/doctest.h>

#include <atomic>
#include <random>
#include <thread>

#include "core/allocator.h"
#include "tests/support/test_support.h"

using namespace tg;

namespace {

constexpr int64_t KiB = 1024, MiB = 1024 * 1024;
constexpr size_t kAll = 0, kSmall = 1, kLarge = 2;

// A fresh allocator on this executable's backing, so every test starts from zero stats.
std::unique_ptr<CachingAllocator> fresh_allocator(bool caching = true) {
#if TG_TEST_CUDA
  return std::make_unique<CachingAllocator>(make_cuda_backing(0), caching);
#else
  return std::make_unique<CachingAllocator>(make_host_backing(256 * MiB), caching);
#endif
}

// More than the backing can give: the host budget above, or more than any GPU has.
constexpr size_t kTooLarge = TG_TEST_CUDA ? (size_t{1} << 44) : size_t{512} * MiB;

}  // namespace

TEST_CASE("1 byte: 512 B block in a 2 MiB small segment, remainder an inactive split") {
  auto alloc = fresh_allocator();
  void* p = alloc->allocate(1);
  REQUIRE(p != nullptr);
  const MemoryStats s = alloc->stats();
  CHECK(s.allocated_bytes[kAll].current == 512);
  CHECK(s.allocated_bytes[kSmall].current == 512);
  CHECK(s.requested_bytes[kAll].current == 1);
  CHECK(s.reserved_bytes[kAll].current == 2 * MiB);
  CHECK(s.reserved_bytes[kSmall].current == 2 * MiB);
  CHECK(s.reserved_bytes[kLarge].current == 0);
  CHECK(s.segment[kAll].current == 1);
  CHECK(s.allocation[kAll].current == 1);
  CHECK(s.active[kAll].current == 1);
  CHECK(s.inactive_split[kAll].current == 1);
  CHECK(s.inactive_split_bytes[kAll].current == 2 * MiB - 512);
  CHECK(s.num_device_alloc == 1);
  alloc->deallocate(p);
  const MemoryStats after = alloc->stats();
  CHECK(after.allocated_bytes[kAll].current == 0);
  CHECK(after.inactive_split[kAll].current == 0);  // merged back into a whole segment
  CHECK(after.reserved_bytes[kAll].current == 2 * MiB);  // cached, not returned
}

TEST_CASE("5 MiB: a 20 MiB large segment with 15 MiB inactive split") {
  auto alloc = fresh_allocator();
  void* p = alloc->allocate(5 * MiB);
  const MemoryStats s = alloc->stats();
  CHECK(s.reserved_bytes[kAll].current == 20 * MiB);
  CHECK(s.reserved_bytes[kLarge].current == 20 * MiB);
  CHECK(s.allocated_bytes[kLarge].current == 5 * MiB);
  CHECK(s.inactive_split_bytes[kAll].current == 15 * MiB);
  CHECK(s.inactive_split[kAll].current == 1);
  alloc->deallocate(p);
}

TEST_CASE("11 MiB: a 12 MiB block, unsplit, requested 11 MiB") {
  auto alloc = fresh_allocator();
  void* p = alloc->allocate(11 * MiB);
  const MemoryStats s = alloc->stats();
  CHECK(s.allocated_bytes[kAll].current == 12 * MiB);
  CHECK(s.reserved_bytes[kAll].current == 12 * MiB);
  CHECK(s.requested_bytes[kAll].current == 11 * MiB);
  CHECK(s.inactive_split[kAll].current == 0);
  CHECK(s.inactive_split_bytes[kAll].current == 0);
  alloc->deallocate(p);
  // A 10.5 MiB request is carved from the cached 12 MiB block (remainder 1.5 MiB > 1 MiB: split).
  void* q = alloc->allocate(10 * MiB + 512 * KiB);
  CHECK(q == p);
  CHECK(alloc->stats().num_device_alloc == 1);
  CHECK(alloc->stats().allocated_bytes[kAll].current == 10 * MiB + 512 * KiB);
  alloc->deallocate(q);
}

TEST_CASE("free then same-size allocation is served from the cache") {
  auto alloc = fresh_allocator();
  for (int64_t size : {int64_t{1000}, 3 * MiB, 40 * MiB}) {
    void* p = alloc->allocate(static_cast<size_t>(size));
    const int64_t device_allocs = alloc->stats().num_device_alloc;
    alloc->deallocate(p);
    void* q = alloc->allocate(static_cast<size_t>(size));
    CHECK(q == p);
    CHECK(alloc->stats().num_device_alloc == device_allocs);
    alloc->deallocate(q);
  }
  CHECK(alloc->stats().num_device_free == 0);
}

TEST_CASE("two blocks of one segment freed merge back; inactive_split returns to 0") {
  auto alloc = fresh_allocator();
  void* a = alloc->allocate(100 * KiB);
  void* b = alloc->allocate(200 * KiB);
  MemoryStats s = alloc->stats();
  CHECK(s.segment[kAll].current == 1);
  CHECK(static_cast<char*>(b) - static_cast<char*>(a) == 100 * KiB);  // best fit, same segment
  CHECK(s.inactive_split[kAll].current == 1);
  CHECK(s.inactive_split_bytes[kAll].current == 2 * MiB - 300 * KiB);
  alloc->deallocate(a);  // a hole before b: a second inactive split block
  s = alloc->stats();
  CHECK(s.inactive_split[kAll].current == 2);
  CHECK(s.inactive_split_bytes[kAll].current == 2 * MiB - 200 * KiB);
  alloc->deallocate(b);  // b merges with both neighbours: one whole segment
  s = alloc->stats();
  CHECK(s.inactive_split[kAll].current == 0);
  CHECK(s.inactive_split_bytes[kAll].current == 0);
  CHECK(s.allocated_bytes[kAll].current == 0);
  // The whole segment is free again: one 2 MiB - 512 B request fits without a new segment.
  void* c = alloc->allocate(static_cast<size_t>(1 * MiB));
  CHECK(alloc->stats().num_device_alloc == 1);
  alloc->deallocate(c);
}

TEST_CASE("empty_cache releases whole free segments and keeps partly used ones") {
  auto alloc = fresh_allocator();
  void* kept = alloc->allocate(9 * MiB);       // 20 MiB segment, partly used (11 MiB free)
  void* freed = alloc->allocate(12 * MiB);     // does not fit in 11 MiB: its own 12 MiB segment
  void* small = alloc->allocate(64 * KiB);     // 2 MiB small segment
  alloc->deallocate(freed);
  alloc->deallocate(small);
  CHECK(alloc->stats().reserved_bytes[kAll].current == 34 * MiB);
  alloc->empty_cache();
  const MemoryStats s = alloc->stats();
  CHECK(s.reserved_bytes[kAll].current == 20 * MiB);
  CHECK(s.segment[kAll].current == 1);
  CHECK(s.num_device_free == 2);
  CHECK(s.allocated_bytes[kAll].current == 9 * MiB);
  alloc->deallocate(kept);
  alloc->empty_cache();
  CHECK(alloc->stats().reserved_bytes[kAll].current == 0);
  CHECK(alloc->stats().num_device_free == 3);
}

TEST_CASE("a request the backing cannot serve: one retry, then a typed OOM naming the size") {
  auto alloc = fresh_allocator();
  void* cached = alloc->allocate(12 * MiB);
  alloc->deallocate(cached);  // a cached segment that the retry path releases
  std::string message;
  try {
    (void)alloc->allocate(kTooLarge);
    FAIL("expected OutOfMemoryError");
  } catch (const OutOfMemoryError& e) {
    message = e.what();
  }
  const MemoryStats s = alloc->stats();
  CHECK(s.num_ooms == 1);
  CHECK(s.num_alloc_retries == 1);
  CHECK(s.reserved_bytes[kAll].current == 0);  // the retry freed the cached segment
  CHECK(message.find(std::to_string(kTooLarge) + " bytes") != std::string::npos);
  CHECK(message.find("tried to allocate") != std::string::npos);
  CHECK(message.find("total capacity") != std::string::npos);
  CHECK(message.find("reserved by tapegrad but unallocated") != std::string::npos);
  // The allocator still works afterwards.
  void* p = alloc->allocate(1 * MiB);
  CHECK(p != nullptr);
  alloc->deallocate(p);
}

TEST_CASE("peaks survive frees and restart at the current value after reset_peak_stats") {
  auto alloc = fresh_allocator();
  void* a = alloc->allocate(30 * MiB);
  void* b = alloc->allocate(50 * MiB);
  alloc->deallocate(b);
  MemoryStats s = alloc->stats();
  CHECK(s.allocated_bytes[kAll].current == 30 * MiB);
  CHECK(s.allocated_bytes[kAll].peak == 80 * MiB);
  CHECK(s.allocated_bytes[kAll].allocated == 80 * MiB);
  CHECK(s.allocated_bytes[kAll].freed == 50 * MiB);
  alloc->reset_peak_stats();
  s = alloc->stats();
  CHECK(s.allocated_bytes[kAll].peak == 30 * MiB);
  CHECK(s.reserved_bytes[kAll].peak == 80 * MiB);  // both segments are still cached
  void* c = alloc->allocate(10 * MiB);
  CHECK(alloc->stats().allocated_bytes[kAll].peak == 40 * MiB);
  alloc->reset_accumulated_stats();
  s = alloc->stats();
  CHECK(s.allocated_bytes[kAll].allocated == 0);
  CHECK(s.allocated_bytes[kAll].freed == 0);
  CHECK(s.num_device_alloc == 0);
  CHECK(s.allocated_bytes[kAll].current == 40 * MiB);
  alloc->deallocate(a);
  alloc->deallocate(c);
}

TEST_CASE("4 threads allocating and freeing concurrently leave consistent stats") {
  auto alloc = fresh_allocator();
  std::atomic<int64_t> requested_total{0};
  auto worker = [&](unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<size_t> size(1, 3 * MiB);
    std::vector<void*> live;
    for (int i = 0; i < 2000; ++i) {
      if (live.size() < 8 && (rng() % 3 != 0 || live.empty())) {
        const size_t n = size(rng);
        live.push_back(alloc->allocate(n));
        requested_total += static_cast<int64_t>(n);
      } else {
        const size_t k = rng() % live.size();
        alloc->deallocate(live[k]);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
      }
    }
    for (void* p : live) alloc->deallocate(p);
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) threads.emplace_back(worker, 1234 + t);
  for (auto& thread : threads) thread.join();
  const MemoryStats s = alloc->stats();
  CHECK(s.allocation[kAll].current == 0);
  CHECK(s.active[kAll].current == 0);
  CHECK(s.allocated_bytes[kAll].current == 0);
  CHECK(s.requested_bytes[kAll].current == 0);
  CHECK(s.requested_bytes[kAll].allocated == requested_total.load());
  CHECK(s.allocated_bytes[kAll].allocated == s.allocated_bytes[kAll].freed);
  CHECK(s.inactive_split[kAll].current == 0);  // everything merged back into whole segments
  CHECK(s.allocation[kAll].current == s.allocation[kSmall].current + s.allocation[kLarge].current);
  CHECK(s.reserved_bytes[kAll].current ==
        s.reserved_bytes[kSmall].current + s.reserved_bytes[kLarge].current);
  CHECK(s.segment[kAll].current == s.num_device_alloc - s.num_device_free);
  alloc->empty_cache();
  CHECK(alloc->stats().reserved_bytes[kAll].current == 0);
}

TEST_CASE("caching disabled: every request and free goes to the backing") {
  auto alloc = fresh_allocator(/*caching=*/false);
  void* p = alloc->allocate(1);
  MemoryStats s = alloc->stats();
  CHECK(s.reserved_bytes[kAll].current == 512);
  CHECK(s.allocated_bytes[kAll].current == 512);
  CHECK(s.inactive_split[kAll].current == 0);
  alloc->deallocate(p);
  void* q = alloc->allocate(5 * MiB);
  s = alloc->stats();
  CHECK(s.reserved_bytes[kAll].current == 5 * MiB);
  CHECK(s.num_device_alloc == 2);
  CHECK(s.num_device_free == 1);
  alloc->deallocate(q);
  CHECK(alloc->stats().reserved_bytes[kAll].current == 0);
}

TEST_CASE("zero-byte requests take no memory") {
  auto alloc = fresh_allocator();
  CHECK(alloc->allocate(0) == nullptr);
  alloc->deallocate(nullptr);
  CHECK(alloc->stats().allocation[kAll].allocated == 0);
}

TEST_CASE("private pools: allocations inside come from the pool's own segments, which nobody else reuses") {
  auto alloc = fresh_allocator();
  const uint64_t pool = alloc->create_private_pool();
  CHECK(alloc->stats().private_pools.current == 1);
  // A free cached block outside the pool is not used inside it.
  void* outside = alloc->allocate(4 * KiB);
  alloc->deallocate(outside);
  alloc->begin_private_pool(pool);
  void* a = alloc->allocate(4 * KiB);
  void* b = alloc->allocate(3 * MiB);
  CHECK(a != outside);
  CHECK(alloc->stats().segment[kAll].current == 3);  // the outside small segment, and two of the pool's
  CHECK(alloc->stats().private_pool_reserved_bytes.current == 2 * MiB + 20 * MiB);
  alloc->deallocate(a);
  void* again = alloc->allocate(4 * KiB);  // inside the pool, its own freed block is reused
  CHECK(again == a);
  alloc->end_private_pool();
  // Outside, the pool's free blocks are not handed out, and empty_cache keeps its segments.
  void* after = alloc->allocate(4 * KiB);
  CHECK(after == outside);
  alloc->deallocate(again);
  void* other = alloc->allocate(4 * KiB);
  CHECK(other != again);
  alloc->empty_cache();
  CHECK(alloc->stats().private_pool_reserved_bytes.current == 2 * MiB + 20 * MiB);
  // Releasing the pool returns its free segments; a block still in use goes when it is freed.
  alloc->release_private_pool(pool);
  CHECK(alloc->stats().private_pools.current == 0);
  CHECK(alloc->stats().private_pool_reserved_bytes.current == 20 * MiB);
  alloc->deallocate(b);
  CHECK(alloc->stats().private_pool_reserved_bytes.current == 0);
  CHECK(alloc->stats().private_pool_reserved_bytes.peak == 2 * MiB + 20 * MiB);
  alloc->deallocate(after);
  alloc->deallocate(other);
  CHECK(alloc->stats().allocated_bytes[kAll].current == 0);
}

TEST_CASE("streams: a freed block is handed out again only for its own stream, inside a private pool too") {
  auto alloc = fresh_allocator();
  constexpr uintptr_t kCurrent = 0, kSide = 0x1000;  // stream keys (never dereferenced)
  void* current_block = alloc->allocate(4 * KiB, kCurrent);
  alloc->deallocate(current_block);
  void* side_block = alloc->allocate(4 * KiB, kSide);
  CHECK(side_block != current_block);  // the side stream takes a segment of its own
  CHECK(alloc->stats().segment[kAll].current == 2);
  alloc->deallocate(side_block);
  void* current_again = alloc->allocate(4 * KiB);  // the backing's current stream: 0 here
  void* side_again = alloc->allocate(4 * KiB, kSide);
  CHECK(current_again == current_block);
  CHECK(side_again == side_block);
  alloc->deallocate(current_again);
  alloc->deallocate(side_again);
  // A captured graph's branches: the pool keeps its streams apart as well.
  const uint64_t pool = alloc->create_private_pool();
  alloc->begin_private_pool(pool);
  void* pool_current = alloc->allocate(4 * KiB, kCurrent);
  alloc->deallocate(pool_current);
  void* pool_side = alloc->allocate(4 * KiB, kSide);
  CHECK(pool_side != pool_current);
  CHECK(alloc->stats().private_pool_reserved_bytes.current == 2 * 2 * MiB);
  alloc->deallocate(pool_side);
  CHECK(alloc->allocate(4 * KiB, kSide) == pool_side);
  CHECK(alloc->allocate(4 * KiB, kCurrent) == pool_current);
  alloc->end_private_pool();
  alloc->deallocate(pool_side);
  alloc->deallocate(pool_current);
  alloc->release_private_pool(pool);
  CHECK(alloc->stats().private_pool_reserved_bytes.current == 0);
  CHECK(alloc->stats().allocated_bytes[kAll].current == 0);
}
