// Generator: a seed plus an offset into the Philox stream. Each random fill reserves the
// blocks it consumes, so consecutive draws never overlap and a (seed, offset) pair replays a
// draw exactly, on CPU or GPU. The state is two integers, which checkpoints save for resume.
#pragma once

#include <cstdint>
#include <mutex>

namespace tg {

class Generator {
 public:
  explicit Generator(uint64_t seed = kDefaultSeed) : seed_(seed) {}

  uint64_t seed() const;
  uint64_t offset() const;
  void manual_seed(uint64_t seed);  // also rewinds the offset to 0
  void set_offset(uint64_t offset);
  // Reserves `blocks` Philox blocks and returns the index of the first.
  uint64_t reserve(uint64_t blocks);

  static constexpr uint64_t kDefaultSeed = 67280421310721ull;

 private:
  mutable std::mutex mutex_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The key of an independent Philox stream for one consumer of a run's seed (initialization,
// dropout, ...): a splitmix64 mix of (seed, stream), so that consumers drawing from block 0 of
// subsequence 0 do not reuse each other's numbers.
constexpr uint64_t stream_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// The seed of rank `rank` of a data-parallel job: `seed` itself for rank 0 (so that a one-process
// run and rank 0 draw the same numbers), an independent key for every other rank (stream ids from
// 2^32 up are ranks', clear of the consumers' below). Consumers whose draws must differ between
// ranks (sampled backward strategies, dropout) derive their streams from it.
constexpr uint64_t rank_seed(uint64_t seed, int rank) {
  return rank == 0 ? seed : stream_seed(seed, (uint64_t{1} << 32) + static_cast<uint64_t>(rank));
}
enum RandomStream : uint64_t {
  kInitStream = 1,
  kDropoutStream = 2,
  kSamplingStream = 3,
  kMixupStream = 4,            // nn/mixup.h: per-batch mixup / cutmix choices
  kTrivialAugmentStream = 5,   // data/trivial_augment.h: per-image operation and magnitude
};

// The process-wide generator used when a factory is given none.
Generator& default_generator();
inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace tg
