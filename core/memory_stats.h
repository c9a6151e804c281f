// Allocator statistics with PyTorch's names and meanings (torch.cuda.memory_stats()):
// each Stat has current/peak/allocated/freed, kept for all blocks and per pool.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

namespace tg {

struct Stat {
  int64_t current = 0;
  int64_t peak = 0;
  int64_t allocated = 0;  // sum of all increases since the last reset_accumulated
  int64_t freed = 0;      // sum of all decreases since the last reset_accumulated

  void update(int64_t delta) {
    current += delta;
    if (delta > 0) allocated += delta; else freed -= delta;
    if (current > peak) peak = current;
  }
  void reset_peak() { peak = current; }
  void reset_accumulated() { allocated = freed = 0; }
};

enum class StatType : int { all = 0, small_pool = 1, large_pool = 2 };
inline constexpr int kNumStatTypes = 3;
using StatArray = std::array<Stat, kNumStatTypes>;

struct MemoryStats {
  StatArray allocation;            // blocks handed out to callers
  StatArray segment;               // segments obtained from the backing (cudaMalloc)
  StatArray active;                // blocks in use (= allocation: one stream, no events)
  StatArray inactive_split;        // free blocks inside a split segment (not releasable)
  StatArray allocated_bytes;       // bytes of the blocks handed out (rounded sizes)
  StatArray reserved_bytes;        // bytes of all segments
  StatArray active_bytes;          // bytes of active blocks
  StatArray inactive_split_bytes;  // bytes of free blocks inside split segments
  StatArray requested_bytes;       // bytes the callers asked for (before rounding)
  int64_t num_alloc_retries = 0;   // backing failures followed by a cache flush and retry
  int64_t num_ooms = 0;            // OutOfMemoryError thrown
  int64_t num_device_alloc = 0;    // calls that obtained a segment from the backing
  int64_t num_device_free = 0;     // calls that returned a segment to the backing
  Stat private_pools;                 // private pools (CUDA graphs) not released yet
  Stat private_pool_reserved_bytes;   // bytes of the segments that belong to private pools

  // Flattened like PyTorch: "allocated_bytes.all.current", "num_ooms", ...
  std::map<std::string, int64_t> as_map() const;
  void reset_peak();
  void reset_accumulated();

  // Calls f(name, array) for each StatArray, in the order of the fields above.
  template <class Self, class F>
  static void for_each_array(Self& stats, F&& f) {
    f("allocation", stats.allocation);
    f("segment", stats.segment);
    f("active", stats.active);
    f("inactive_split", stats.inactive_split);
    f("allocated_bytes", stats.allocated_bytes);
    f("reserved_bytes", stats.reserved_bytes);
    f("active_bytes", stats.active_bytes);
    f("inactive_split_bytes", stats.inactive_split_bytes);
    f("requested_bytes", stats.requested_bytes);
  }
};

// Human-readable table of `stats` (like torch.cuda.memory_summary()).
std::string memory_summary(const MemoryStats& stats, const std::string& device_name);
// "1.50 MiB"-style rendering of a byte count.
std::string format_bytes(int64_t bytes);

}  // namespace tg
