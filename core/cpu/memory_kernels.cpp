// CPU memory kernels: strided copy with dtype conversion, fill, Philox random fills.
#include <cstring>

#include "core/memory_kernels.h"
#include "core/philox.h"
#include "core/strided.h"

namespace tg::kernels {

namespace {

template <class Dst, class Src>
void copy_strided(const CopyGeometry& g, Dst* dst, const Src* src, int64_t numel) {
  if (g.ndim == 0) {
    *dst = convert<Dst>(*src);
    return;
  }
  // Walk the multi-index incrementally: no division per element.
  int64_t index[kMaxCopyDims] = {};
  int64_t dst_offset = 0, src_offset = 0;
  const int last = g.ndim - 1;
  const int64_t inner = g.sizes[last], dst_step = g.dst_strides[last], src_step = g.src_strides[last];
  for (int64_t done = 0; done < numel; done += inner) {
    for (int64_t i = 0; i < inner; ++i)
      dst[dst_offset + i * dst_step] = convert<Dst>(src[src_offset + i * src_step]);
    for (int d = last - 1; d >= 0; --d) {
      dst_offset += g.dst_strides[d];
      src_offset += g.src_strides[d];
      if (++index[d] < g.sizes[d]) break;
      dst_offset -= g.dst_strides[d] * g.sizes[d];
      src_offset -= g.src_strides[d] * g.sizes[d];
      index[d] = 0;
    }
  }
}

}  // namespace

void copy_cpu(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    std::memmove(dst.raw_data(), src.raw_data(), dst.nbytes());
    return;
  }
  const CopyGeometry g = make_copy_geometry(dst.shape(), dst.strides(), src.strides());
  TG_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using dst_t = scalar_t;
    TG_DISPATCH_ALL(src.dtype(), "copy", [&] {
      copy_strided(g, static_cast<dst_t*>(dst.raw_data()), static_cast<const scalar_t*>(src.raw_data()),
                   dst.numel());
    });
  });
}

void fill_cpu(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  // The value acts as a source of stride 0 in every dim.
  const CopyGeometry g = make_copy_geometry(dst.shape(), dst.strides(), Strides(dst.strides().size(), 0));
  TG_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    const scalar_t v = convert<scalar_t>(value);
    copy_strided(g, static_cast<scalar_t*>(dst.raw_data()), &v, dst.numel());
  });
}

void random_cpu(const Tensor& dst, Distribution distribution, uint64_t seed, uint64_t first_block,
                double a, double b) {
  TG_INTERNAL_ASSERT(dst.is_contiguous(), "random fills write contiguous tensors");
  TG_DISPATCH_FLOATING(dst.dtype(), "random", [&] {
    scalar_t* out = static_cast<scalar_t*>(dst.raw_data());
    const uint64_t n = static_cast<uint64_t>(dst.numel());
    for (uint64_t i = 0; i < n; ++i) {
      const double value =
          distribution == Distribution::uniform
              ? a + (b - a) * static_cast<double>(philox::uniform_element(seed, first_block, i))
              : a + b * static_cast<double>(philox::normal_element(seed, first_block, i));
      out[i] = convert<scalar_t>(value);
    }
  });
}

}  // namespace tg::kernels
