// Helpers shared by CPU and CUDA elementwise kernels: element conversion between dtypes, and an
// N-d strided geometry over several operands (adjacent dims coalesced, size-1 dims dropped)
// that maps a linear index of the iteration shape to each operand's element offset.
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"

namespace tg {

// Converts between element types; bf16 goes through float, floats to unsigned through int64.
template <class To, class From>
TG_HOST_DEVICE inline To convert(From value) {
  if constexpr (std::is_same_v<To, From>) {
    return value;
  } else if constexpr (std::is_same_v<From, bf16>) {
    return convert<To>(static_cast<float>(value));
  } else if constexpr (std::is_same_v<To, bf16>) {
    return bf16(static_cast<float>(value));
  } else if constexpr (std::is_unsigned_v<To> && std::is_floating_point_v<From>) {
    return static_cast<To>(static_cast<int64_t>(value));
  } else {
    return static_cast<To>(value);
  }
}

inline constexpr int kMaxGeometryDims = 12;

// Iteration over `sizes` (row-major) for N operands with their own element strides.
template <int N>
struct StridedGeometry {
  int ndim = 0;
  bool index_fits_32_bits = false;  // fewer than 2^32 elements: divide in 32 bits (set by make_geometry)
  int64_t sizes[kMaxGeometryDims];
  int64_t strides[N][kMaxGeometryDims];

  // Element offsets of linear index `index` in each operand. A GPU divides 64-bit integers in
  // a long software sequence, several times slower than 32-bit ones: a copy or an accumulation
  // over a 4-d view spent most of its time here. One dim (contiguous or evenly strided
  // operands) needs no division at all.
  TG_HOST_DEVICE void offsets(int64_t index, int64_t (&out)[N]) const {
    if (ndim == 1) {
      for (int k = 0; k < N; ++k) out[k] = index * strides[k][0];
      return;
    }
    for (int k = 0; k < N; ++k) out[k] = 0;
    if (index_fits_32_bits) {
      auto rest = static_cast<uint32_t>(index);
      for (int d = ndim - 1; d >= 0; --d) {
        const auto size = static_cast<uint32_t>(sizes[d]);
        const uint32_t next = rest / size;
        const int64_t i = rest - next * size;
        rest = next;
        for (int k = 0; k < N; ++k) out[k] += i * strides[k][d];
      }
      return;
    }
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t i = index % sizes[d];
      index /= sizes[d];
      for (int k = 0; k < N; ++k) out[k] += i * strides[k][d];
    }
  }
};

// Builds the geometry of `shape` for operands with the given strides (each as long as shape).
template <int N>
StridedGeometry<N> make_geometry(const Shape& shape, const std::array<const Strides*, N>& operand_strides) {
  StridedGeometry<N> g;
  for (int64_t d = 0; d < shape.ndim(); ++d) {
    const size_t i = static_cast<size_t>(d);
    if (shape[d] == 1) continue;
    if (g.ndim > 0) {
      const int last = g.ndim - 1;
      bool mergeable = true;
      for (int k = 0; k < N; ++k) mergeable &= g.strides[k][last] == (*operand_strides[k])[i] * shape[d];
      if (mergeable) {
        g.sizes[last] *= shape[d];
        for (int k = 0; k < N; ++k) g.strides[k][last] = (*operand_strides[k])[i];
        continue;
      }
    }
    TG_CHECK(g.ndim < kMaxGeometryDims, NotImplementedError, "elementwise pass over more than ",
             kMaxGeometryDims, " non-mergeable dims (shape ", shape.str(), ")");
    g.sizes[g.ndim] = shape[d];
    for (int k = 0; k < N; ++k) g.strides[k][g.ndim] = (*operand_strides[k])[i];
    ++g.ndim;
  }
  g.index_fits_32_bits = shape.numel() <= static_cast<int64_t>(UINT32_MAX);
  return g;
}

}  // namespace tg

namespace tg {

// Host-side walk over every element of the geometry in row-major order, calling
// f(const int64_t (&offsets)[N]); offsets advance incrementally (no division per element).
template <int N, class F>
void for_each_offset(const StridedGeometry<N>& g, F&& f) {
  int64_t base[N] = {};
  if (g.ndim == 0) {
    f(base);
    return;
  }
  int64_t index[kMaxGeometryDims] = {};
  const int last = g.ndim - 1;
  int64_t total = 1;
  for (int d = 0; d < g.ndim; ++d) total *= g.sizes[d];
  for (int64_t done = 0; done < total; done += g.sizes[last]) {
    int64_t current[N];
    for (int64_t i = 0; i < g.sizes[last]; ++i) {
      for (int k = 0; k < N; ++k) current[k] = base[k] + i * g.strides[k][last];
      f(current);
    }
    for (int d = last - 1; d >= 0; --d) {
      for (int k = 0; k < N; ++k) base[k] += g.strides[k][d];
      if (++index[d] < g.sizes[d]) break;
      for (int k = 0; k < N; ++k) base[k] -= g.strides[k][d] * g.sizes[d];
      index[d] = 0;
    }
  }
}

}  // namespace tg
