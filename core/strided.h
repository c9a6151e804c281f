// Helpers shared by the CPU and CUDA memory kernels: element conversion between dtypes and an
// N-d strided geometry (with adjacent dims coalesced) that maps a linear index to offsets.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
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

inline constexpr int kMaxCopyDims = 12;

// Geometry of an elementwise pass over `shape` with two operands (dst, src) of given strides.
struct CopyGeometry {
  int ndim = 0;
  int64_t sizes[kMaxCopyDims];
  int64_t dst_strides[kMaxCopyDims];
  int64_t src_strides[kMaxCopyDims];

  // Offsets (in elements) of linear element `index` (row-major over sizes).
  TG_HOST_DEVICE void offsets(int64_t index, int64_t& dst, int64_t& src) const {
    dst = 0;
    src = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t i = index % sizes[d];
      index /= sizes[d];
      dst += i * dst_strides[d];
      src += i * src_strides[d];
    }
  }
};

// Builds the geometry, dropping size-1 dims and merging dims that are contiguous in both.
CopyGeometry make_copy_geometry(const Shape& shape, const Strides& dst_strides,
                                const Strides& src_strides);

}  // namespace tg
