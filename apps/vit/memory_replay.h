// The bookkeeping under the memory model's replay, and the replay's declaration (internal to
// apps/vit/memory_*.cpp): live tensors with
// reference counts (a storage that several nodes keep is one tensor with several references),
// their kinds, the running total and the peak with what was live then; optionally every request
// goes through a real CachingAllocator on an address-only backing, so that block sizes are the
// allocator's own (a cached block reused without a split counts whole).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <utility>
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


// What a matmul node's strategy keeps of its operand (ops/matmul/exact.cpp, sampled.cpp).
struct SavedOperand {
  Id rows = kNone, indices = kNone, weights = kNone;
  int64_t k = 0;      // sampled rows (0: exact)
  bool copy = false;  // a saved-dtype copy (the contraction converts it back)
};

// What the recorded forward of one block keeps, by the node that keeps it.
struct BlockKeep {
  Id checkpoint_input = kNone;                          // CheckpointBackward
  Id ln1_x = kNone, ln1_mean = kNone, ln1_rstd = kNone;  // LayerNorm (or NormLinear for qkv)
  Id qkv_weight = kNone;
  SavedOperand qkv_x;
  Id qkv = kNone, attn_out = kNone, lse = kNone;  // AttentionBackward: q, k, v (one storage), O, lse
  Id proj_weight = kNone;
  SavedOperand proj_x;
  Id ln2_x = kNone, ln2_mean = kNone, ln2_rstd = kNone;
  Id fc1_weight = kNone, fc1_bias = kNone;  // the bias copy only for the fused fc1+GELU
  SavedOperand fc1_x;
  Id fc1_out = kNone;  // GELU's input
  Id fc2_weight = kNone;
  SavedOperand fc2_x;
};

// One training step replayed (memory_model.cpp: the blocks; memory_step.cpp: the whole step).
class StepReplay {
 public:
  StepReplay(const StepSetup& s, const MemoryPlan& plan, CachingAllocator* cache = nullptr, bool persistent_cached = false)
      : r_(cache), s_(s), plan_(plan), c_(s.config), B_(s.batch), T_(c_.tokens()), Np_(c_.num_patches()), D_(c_.dim),
        Hd_(static_cast<int64_t>(static_cast<double>(c_.dim) * c_.mlp_ratio)), C_(c_.num_classes),
        P_(c_.in_channels * c_.patch_size * c_.patch_size), N_(B_ * T_), a_(s.autocast_bf16 ? 2 : 4),
        copy_on_save_(s.saved_dtype && !s.autocast_bf16), g_(s.autocast_bf16 && !s.f32_weight_gradients ? 2 : 4) {
    r_.set_skip_persistent(persistent_cached);
  }

  MemoryPrediction run();

 private:
  Replay r_;
  K kind(K k) const { return rerun_ ? K::transient_recompute : k; }
  Id alloc(int64_t bytes, K k) { return r_.alloc(bytes, kind(k)); }
  Id grad(int64_t bytes) { return r_.alloc(bytes, K::transient_gradients); }

  // The parameters' tensors (vit.cpp, nn/layers.cpp), as element counts.
  std::vector<int64_t> parameter_sizes() const;
  SavedOperand save_operand(Id x, int64_t rows, int64_t width, K kept_kind, double ratio);
  void release(const SavedOperand& saved);
  Id linear(int64_t slot, Id x, int64_t rows, int64_t in, int64_t out, K out_kind, double ratio, bool record,
            SavedOperand& saved, Id& weight_copy, K x_kind);
  // norm_linear over the block's rows (N_ × D_ in, `out` features): the kept tensors into the
  // given slots when `record`.
  Id norm_linear(int64_t slot, Id x, int64_t out, K out_kind, bool record, Id& kept_x, Id& kept_mean, Id& kept_rstd,
                 Id& weight_copy);
  // Under autocast, the bf16 copies (bias, weight) a linear-family op multiplies with: made for
  // the op, or the step's cached ones shared (StepSetup::weight_cache). `slot`: 0-3 the block's
  // qkv, proj, fc1, fc2 (of block_); kPatch, kHead.
  std::pair<Id, Id> parameter_copies(int64_t slot, int64_t out, int64_t in, bool record);
  static constexpr int64_t kPatch = -1, kHead = -2;
  Id weight_gradient(const SavedOperand& saved, int64_t rows, int64_t in, int64_t out);
  void parameter_gradients(Id weight_grad, int64_t weight_elems, Id bias_grad, int64_t bias_elems);
  // State tensors per parameter: 2 for Adam and AdamW, 1 for SGD (its momentum).
  int64_t optimizer_moments() const { return s_.optimizer == "sgd" ? 1 : 2; }
  void accumulate(Id& buffer, Id incoming, bool& shared);
  Id recompute_norm_output();
  void norm_gradients(Id weight_grad, Id bias_grad);
  void store_gradient(Id g, int64_t nbytes);
  Id block_forward(int64_t b, Id x, bool record, BlockKeep& k);
  Id block_backward(int64_t b, Id grad_out, bool shared, BlockKeep& k);

  const StepSetup& s_;
  const MemoryPlan& plan_;
  const VitConfig& c_;
  const int64_t B_, T_, Np_, D_, Hd_, C_, P_, N_;
  const int64_t a_;           // bytes of an activation that feeds or leaves a GEMM (bf16 under autocast)
  const bool copy_on_save_;   // ExactStrategy keeps a bf16 copy of f32 operands
  bool rerun_ = false;        // inside a checkpoint's rerun: what is allocated is recomputed
  int64_t block_ = -1;        // the block whose forward runs
  std::map<std::pair<int64_t, int64_t>, std::pair<Id, Id>> cache_;  // (block, slot) -> (bias, weight) copies
  const int64_t g_;           // bytes of a parameter gradient as the linear ops return it
  std::vector<Id> grads_;     // the parameters' .grad, freed by zero_grad
};

}  // namespace tg::vit::detail
