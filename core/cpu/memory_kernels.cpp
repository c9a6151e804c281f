// CPU memory kernels: strided copy with dtype conversion, fill, accumulate, Philox fills.
#include <cstring>

#include "core/memory_kernels.h"
#include "core/philox.h"
#include "core/strided.h"

namespace tg::kernels {

void copy_cpu(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    std::memmove(dst.raw_data(), src.raw_data(), dst.nbytes());
    return;
  }
  const auto g = make_geometry<2>(dst.shape(), {&dst.strides(), &src.strides()});
  TG_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using dst_t = scalar_t;
    TG_DISPATCH_ALL(src.dtype(), "copy", [&] {
      auto* out = static_cast<dst_t*>(dst.raw_data());
      const auto* in = static_cast<const scalar_t*>(src.raw_data());
      for_each_offset(g, [&](const int64_t (&o)[2]) { out[o[0]] = convert<dst_t>(in[o[1]]); });
    });
  });
}

void fill_cpu(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  const auto g = make_geometry<1>(dst.shape(), {&dst.strides()});
  TG_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    const scalar_t v = convert<scalar_t>(value);
    auto* out = static_cast<scalar_t*>(dst.raw_data());
    for_each_offset(g, [&](const int64_t (&o)[1]) { out[o[0]] = v; });
  });
}

void accumulate_cpu(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  const auto g = make_geometry<2>(dst.shape(), {&dst.strides(), &src.strides()});
  TG_DISPATCH_FLOATING(dst.dtype(), "accumulate", [&] {
    using acc = acc_t<scalar_t>;
    auto* out = static_cast<scalar_t*>(dst.raw_data());
    const auto* in = static_cast<const scalar_t*>(src.raw_data());
    for_each_offset(g, [&](const int64_t (&o)[2]) {
      out[o[0]] = convert<scalar_t>(convert<acc>(out[o[0]]) + convert<acc>(in[o[1]]));
    });
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
