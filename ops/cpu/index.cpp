// CPU kernels of index_select: a row gather (byte copies, so any dtype) and its deterministic
// scatter-add backward (the same order of additions as the CUDA kernel).
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/strided.h"
#include "ops/index_kernels.h"

namespace tg::cpu {

namespace {

// The indices as int64, each checked against the size of the indexed dim.
std::vector<int64_t> checked_indices(const Tensor& indices, int64_t size) {
  std::vector<int64_t> result(static_cast<size_t>(indices.numel()));
  dispatch_index_type(indices.dtype(), [&](auto tag) {
    const auto* idx = static_cast<const decltype(tag)*>(indices.raw_data());
    for (size_t k = 0; k < result.size(); ++k) {
      const int64_t i = static_cast<int64_t>(idx[k]);
      TG_CHECK(i >= 0 && i < size, IndexError, "index_select: index ", i, " at position ", k,
               " is out of range for a dim of size ", size);
      result[k] = i;
    }
  });
  return result;
}

}  // namespace

void index_select(const Tensor& out, const Tensor& x, const Tensor& indices, IndexShape s) {
  const std::vector<int64_t> idx = checked_indices(indices, s.size);
  const size_t row_bytes = static_cast<size_t>(s.inner) * x.itemsize();
  const auto* src = static_cast<const char*>(x.raw_data());
  auto* dst = static_cast<char*>(out.raw_data());
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t k = 0; k < s.count; ++k)
      std::memcpy(dst + static_cast<size_t>(o * s.count + k) * row_bytes,
                  src + static_cast<size_t>(o * s.size + idx[static_cast<size_t>(k)]) * row_bytes, row_bytes);
}

void index_select_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices, IndexShape s) {
  const std::vector<int64_t> idx = checked_indices(indices, s.size);
  // Positions grouped by destination, in increasing position within a group (stable), as the
  // CUDA radix sort orders them: each destination row is the sum of its group in that order.
  std::vector<int64_t> order(idx.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return idx[static_cast<size_t>(a)] < idx[static_cast<size_t>(b)]; });
  TG_DISPATCH_FLOATING(grad_x.dtype(), "index_select_backward", [&] {
    using acc = acc_t<scalar_t>;
    const auto* g = static_cast<const scalar_t*>(grad_out.raw_data());
    auto* gx = static_cast<scalar_t*>(grad_x.raw_data());
    std::vector<acc> row(static_cast<size_t>(s.inner));
    for (int64_t o = 0; o < s.outer; ++o) {
      for (size_t begin = 0; begin < order.size();) {
        const int64_t dest = idx[static_cast<size_t>(order[begin])];
        std::fill(row.begin(), row.end(), acc(0));
        size_t end = begin;
        for (; end < order.size() && idx[static_cast<size_t>(order[end])] == dest; ++end) {
          const scalar_t* from = g + (o * s.count + order[end]) * s.inner;
          for (int64_t c = 0; c < s.inner; ++c) row[static_cast<size_t>(c)] += convert<acc>(from[c]);
        }
        scalar_t* to = gx + (o * s.size + dest) * s.inner;
        for (int64_t c = 0; c < s.inner; ++c) to[c] = convert<scalar_t>(row[static_cast<size_t>(c)]);
        begin = end;
      }
    }
  });
}

}  // namespace tg::cpu
