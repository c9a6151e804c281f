#!/usr/bin/env python3
"""tapegrad's data order and augmentation choices in Python, bit for bit (for train_timm.py).

data::DataLoader::permutation (std::mt19937_64 Fisher-Yates with rejection-sampled indices) and
data/augment_pixel.h choose() (Philox4x32-10 at key seed, counter (sample, epoch)). Needs numpy
only. `python3 tests/pytorch/tapegrad_data.py` checks them against known answers: the C++
standard's mt19937_64 value, Random123's Philox vector, and the values tapegrad's own test pins
(tests/data/test_loader.cpp, "permutation and crop/flip choices of seed 7").
"""
import numpy as np

MASK32, MASK64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF


class MT19937_64:
    """std::mt19937_64 (seeded with one value, as std::mt19937_64 rng(seed))."""

    def __init__(self, seed):
        self.mt = [seed & MASK64]
        for i in range(1, 312):
            prev = self.mt[-1]
            self.mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & MASK64)
        self.index = 312

    def __call__(self):
        if self.index >= 312:
            mt = self.mt
            for i in range(312):
                x = (mt[i] & 0xFFFFFFFF80000000) | (mt[(i + 1) % 312] & 0x7FFFFFFF)
                xa = (x >> 1) ^ (0xB5026F5AA96619E9 if x & 1 else 0)
                mt[i] = mt[(i + 156) % 312] ^ xa
            self.index = 0
        y = self.mt[self.index]
        self.index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        return y ^ (y >> 43)


def tapegrad_permutation(n, seed, epoch):
    """data::DataLoader::permutation: Fisher-Yates from the end with rejection-sampled indices."""
    rng = MT19937_64((seed * 0x9E3779B97F4A7C15 + epoch) & MASK64)
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        bound = i + 1
        limit = MASK64 - MASK64 % bound
        r = rng()
        while r >= limit:
            r = rng()
        j = r % bound
        order[i], order[j] = order[j], order[i]
    return order


def philox(seed, block, subsequence):
    """core/philox.h generate(seed, block, subsequence) for an array of blocks: words w0..w3."""
    block = np.asarray(block, dtype=np.uint64)
    c0, c1 = block & np.uint64(MASK32), block >> np.uint64(32)
    c2 = np.full_like(c0, subsequence & MASK32)
    c3 = np.full_like(c0, (subsequence >> 32) & MASK32)
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    m0, m1, mask = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57), np.uint64(MASK32)
    for _ in range(10):
        p0, p1 = m0 * c0, m1 * c2  # < 2^64: exact in uint64
        hi0, lo0, hi1, lo1 = p0 >> np.uint64(32), p0 & mask, p1 >> np.uint64(32), p1 & mask
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        k0, k1 = (k0 + 0x9E3779B9) & MASK32, (k1 + 0xBB67AE85) & MASK32
    return c0, c1, c2, c3


def tapegrad_choices(n, seed, epoch, padding):
    """data/augment_pixel.h choose(): crop offsets in [0, 2*padding] and the flip of each sample."""
    w0, w1, w2, _ = philox(seed, np.arange(n, dtype=np.uint64), epoch)
    span = np.uint64(2 * padding + 1)
    return (w0 % span).astype(np.int64), (w1 % span).astype(np.int64), (w2 & np.uint64(1)).astype(bool)


def self_test():
    r = MT19937_64(5489)
    assert [r() for _ in range(10000)][-1] == 9981545732273789042, "mt19937_64: 10000th value of seed 5489"
    w = philox(0x299f31d0a4093822, [0x85a308d3243f6a88], 0x0370734413198a2e)
    assert [int(x[0]) for x in w] == [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1], "Philox4x32-10 KAT"
    assert tapegrad_permutation(1000, 7, 0)[:8] == [898, 906, 799, 987, 681, 240, 139, 880]
    assert tapegrad_permutation(1000, 7, 2)[:8] == [856, 901, 330, 283, 116, 902, 302, 845]
    cy, cx, flip = tapegrad_choices(1000, 7, 2, 4)
    assert [(int(cy[k]), int(cx[k]), bool(flip[k])) for k in (0, 1, 999)] == [(4, 4, False), (6, 5, True), (1, 4, True)]
    print("tapegrad_data: PASS")


if __name__ == "__main__":
    self_test()
