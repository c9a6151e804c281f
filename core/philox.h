// Philox4x32-10 counter-based generator (Salmon et al., SC'11), usable on host and device.
// A value is a pure function of (key, counter), so CPU and GPU kernels that agree on the
// counter layout produce identical streams. Layout used by tapegrad's random fills: key =
// seed; counter = (block index as 64 bits, subsequence as 64 bits); each block gives 4 words.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/dtype.h"

namespace tg::philox {

struct Block {
  uint32_t w[4];
};

TG_HOST_DEVICE inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

// 10 rounds of Philox4x32 on counter (c0..c3) with key (k0, k1).
TG_HOST_DEVICE inline Block generate(uint64_t seed, uint64_t block_index, uint64_t subsequence) {
  uint32_t c0 = static_cast<uint32_t>(block_index), c1 = static_cast<uint32_t>(block_index >> 32);
  uint32_t c2 = static_cast<uint32_t>(subsequence), c3 = static_cast<uint32_t>(subsequence >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kMul0, c0, hi0, lo0);
    mulhilo(kMul1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Block{{c0, c1, c2, c3}};
}

// Uniform float in [0, 1) from the top 24 bits (exact in float, identical on CPU and GPU).
TG_HOST_DEVICE inline float to_uniform(uint32_t word) {
  return static_cast<float>(word >> 8) * (1.0f / 16777216.0f);
}

// Standard normal number `lane` (0 or 1) of the Box-Muller pair made from words 0 and 1.
TG_HOST_DEVICE inline float to_normal(const Block& block, int lane) {
  const float u1 = 1.0f - to_uniform(block.w[0]);  // (0, 1]: the log stays finite
  const float u2 = to_uniform(block.w[1]);
  const float radius = sqrtf(-2.0f * logf(u1));
  const float angle = 6.2831853071795864f * u2;
  return lane == 0 ? radius * cosf(angle) : radius * sinf(angle);
}

}  // namespace tg::philox

namespace tg::philox {

// Element `index` of a uniform [0, 1) fill that starts at block `first_block`.
TG_HOST_DEVICE inline float uniform_element(uint64_t seed, uint64_t first_block, uint64_t index) {
  return to_uniform(generate(seed, first_block + index / 4, 0).w[index % 4]);
}

// Element `index` of a standard-normal fill that starts at block `first_block`.
TG_HOST_DEVICE inline float normal_element(uint64_t seed, uint64_t first_block, uint64_t index) {
  return to_normal(generate(seed, first_block + index / 2, 0), static_cast<int>(index % 2));
}

}  // namespace tg::philox
