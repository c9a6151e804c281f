// The bookkeeping under the memory model's replay (memory_model.cpp): live tensors with
// reference counts (a storage that several nodes keep is one tensor with several references),
// their kinds, the running total and the peak with what was live then; optionally every request
// goes through a real CachingAllocator on an address-only backing, so that block sizes are the
// allocator's own (a cached block reused without a split counts whole).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "apps/vit/memory_model.h"
#include "core/caching_allocator.h"

namespace tg::vit::detail {

using K = MemoryKind;
using Id = int32_t;
inline constexpr Id kNone = -1;

// Addresses without memory: the allocator's bookkeeping never touches the bytes (no poisoning).
class AddressBacking final : public MemoryBacking {
 public:
  void* allocate(size_t nbytes) override {
    void* ptr = reinterpret_cast<void*>(next_);
    next_ += (nbytes + 511) / 512 * 512;
    return ptr;
  }
  void release(void*, size_t) override {}
  std::optional<Info> info() const override { return std::nullopt; }
  void fill(void*, size_t, uint8_t) override {}
  std::string device_name() const override { return "memory model"; }

 private:
  uintptr_t next_ = uintptr_t{1} << 20;
};

// Live tensors with reference counts, and the peak with what was live then.
class Replay {
 public:
  // `cache`: a caching allocator on a backing that hands out addresses only, which the replay's
  // requests go through, so that a block's size is the one the real allocator would give it
  // (a reused cached block that is not split counts whole); null: sizes by the rounding rules.
  explicit Replay(CachingAllocator* cache = nullptr) : cache_(cache) {}

  // A tensor that exists before the replayed step (parameters, state, data): counted with its
  // rounded size, not requested from the cache (where an earlier replayed step left it).
  Id persistent(int64_t nbytes, K kind) {
    CachingAllocator* cache = cache_;
    if (skip_persistent_) cache_ = nullptr;
    const Id id = alloc(nbytes, kind);
    cache_ = cache;
    return id;
  }
  void set_skip_persistent(bool skip) { skip_persistent_ = skip; }

  Id alloc(int64_t nbytes, K kind) {
    if (nbytes <= 0) return kNone;
    int64_t size = rounded(nbytes);
    void* ptr = nullptr;
    if (cache_) {
      const int64_t before = allocated();
      ptr = cache_->allocate(static_cast<size_t>(nbytes));
      size = allocated() - before;
    }
    tensors_.push_back({size, kind, 1, block_, ptr});
    live_ += size;
    by_kind_[static_cast<size_t>(kind)] += size;
    if (live_ > peak_) {
      peak_ = live_;
      at_peak_ = by_kind_;
      peak_phase_ = phase_;
      peak_block_ = block_;
      peak_what_ = what_;
    }
    return static_cast<Id>(tensors_.size() - 1);
  }
  Id share(Id id) {
    if (id != kNone) ++tensors_[static_cast<size_t>(id)].refs;
    return id;
  }
  void unref(Id id) {
    if (id == kNone) return;
    Tensor& t = tensors_[static_cast<size_t>(id)];
    TG_INTERNAL_ASSERT(t.refs > 0, "memory model: tensor ", id, " released twice");
    if (--t.refs == 0) {
      if (t.ptr) cache_->deallocate(t.ptr);
      live_ -= t.size;
      by_kind_[static_cast<size_t>(t.kind)] -= t.size;
    }
  }
  // A gradient that AccumulateGrad keeps as the parameter's .grad (it steals the buffer).
  void retag(Id id, K kind) {
    if (id == kNone) return;
    Tensor& t = tensors_[static_cast<size_t>(id)];
    by_kind_[static_cast<size_t>(t.kind)] -= t.size;
    t.kind = kind;
    by_kind_[static_cast<size_t>(kind)] += t.size;
  }
  // The block a tensor is reported under (a block's output is the next block's input).
  void assign(Id id, int64_t block) {
    if (id != kNone) tensors_[static_cast<size_t>(id)].block = block;
  }
  void at(const char* phase, int64_t block, const char* what) {
    phase_ = phase;
    block_ = block;
    what_ = what;
  }
  // Live bytes by block (the last row: outside the blocks) and kind, and their sum.
  void snapshot(int64_t depth, MemoryPrediction& p) const {
    p.after_forward.assign(static_cast<size_t>(depth + 1), {});
    p.after_forward_total = live_;
    for (const Tensor& t : tensors_)
      if (t.refs > 0)
        p.after_forward[static_cast<size_t>(t.block < 0 ? depth : t.block)][static_cast<size_t>(t.kind)] += t.size;
  }
  MemoryPrediction result() const {
    MemoryPrediction p;
    p.peak_bytes = peak_;
    p.at_peak = at_peak_;
    p.peak_moment = std::string(peak_phase_) + (peak_block_ >= 0 ? ", block " + std::to_string(peak_block_) : "") +
                    (*peak_what_ ? std::string(": ") + peak_what_ : "");
    return p;
  }

 private:
  struct Tensor {
    int64_t size;
    K kind;
    int refs;
    int64_t block;  // the block whose code allocated it, -1 outside the blocks
    void* ptr;      // its block in `cache_`
  };
  int64_t allocated() const { return cache_->stats().allocated_bytes[static_cast<size_t>(StatType::all)].current; }
  // The allocator's block size for a request in a fresh segment: 512-byte rounding, and from 10
  // MiB a segment of whole 2 MiB that is not split when less than 1 MiB would remain.
  static int64_t rounded(int64_t nbytes) {
    const size_t size = CachingAllocator::round_size(static_cast<size_t>(nbytes));
    if (size < alloc_constants::kMinLargeAlloc) return static_cast<int64_t>(size);
    const size_t segment = CachingAllocator::segment_size(size);
    return static_cast<int64_t>(segment - size <= alloc_constants::kSmallSize ? segment : size);
  }
  CachingAllocator* cache_ = nullptr;
  bool skip_persistent_ = false;
  std::vector<Tensor> tensors_;
  int64_t live_ = 0, peak_ = 0;
  std::array<int64_t, static_cast<size_t>(K::count)> by_kind_{}, at_peak_{};
  const char *phase_ = "", *what_ = "", *peak_phase_ = "", *peak_what_ = "";
  int64_t block_ = -1, peak_block_ = -1;
};

}  // namespace tg::vit::detail
