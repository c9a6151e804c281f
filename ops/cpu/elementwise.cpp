// CPU kernels of the elementwise family.
#include "core/strided.h"
#include "ops/elementwise_kernels.h"

namespace tg::cpu {

void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  const auto g = make_geometry<3>(out.shape(), {&out.strides(), &a.strides(), &b.strides()});
  TG_DISPATCH_FLOATING(out.dtype(), "binary", [&] {
    using acc = acc_t<scalar_t>;
    auto* o = static_cast<scalar_t*>(out.raw_data());
    const auto* x = static_cast<const scalar_t*>(a.raw_data());
    const auto* y = static_cast<const scalar_t*>(b.raw_data());
    for_each_offset(g, [&](const int64_t (&k)[3]) {
      o[k[0]] = convert<scalar_t>(binary_apply<acc>(op, convert<acc>(x[k[1]]), convert<acc>(y[k[2]])));
    });
  });
}

void add_converted(const Tensor& out, const Tensor& a, const Tensor& b) {
  TG_DISPATCH_FLOATING(out.dtype(), "add", [&] {
    using out_t = scalar_t;
    using acc = acc_t<out_t>;
    TG_DISPATCH_FLOATING(b.dtype(), "add", [&] {
      auto* o = static_cast<out_t*>(out.raw_data());
      const auto* x = static_cast<const out_t*>(a.raw_data());
      const auto* y = static_cast<const scalar_t*>(b.raw_data());
      for (int64_t i = 0; i < out.numel(); ++i)
        o[i] = convert<out_t>(convert<acc>(x[i]) + convert<acc>(convert<out_t>(y[i])));
    });
  });
}

void unary(UnaryOp op, const Tensor& out, const Tensor& x, double p0, double p1) {
  const auto g = make_geometry<2>(out.shape(), {&out.strides(), &x.strides()});
  TG_DISPATCH_FLOATING(out.dtype(), "unary", [&] {
    using acc = acc_t<scalar_t>;
    auto* o = static_cast<scalar_t*>(out.raw_data());
    const auto* in = static_cast<const scalar_t*>(x.raw_data());
    const acc a0 = static_cast<acc>(p0), a1 = static_cast<acc>(p1);
    for_each_offset(g, [&](const int64_t (&k)[2]) {
      o[k[0]] = convert<scalar_t>(unary_apply<acc>(op, convert<acc>(in[k[1]]), a0, a1));
    });
  });
}

void unary_backward(UnaryOp op, const Tensor& grad_x, const Tensor& grad_y, const Tensor& saved, double p0) {
  const auto g = make_geometry<3>(grad_x.shape(), {&grad_x.strides(), &grad_y.strides(), &saved.strides()});
  TG_DISPATCH_FLOATING(grad_x.dtype(), "unary_backward", [&] {
    using acc = acc_t<scalar_t>;
    auto* gx = static_cast<scalar_t*>(grad_x.raw_data());
    const auto* gy = static_cast<const scalar_t*>(grad_y.raw_data());
    const auto* s = static_cast<const scalar_t*>(saved.raw_data());
    const acc a0 = static_cast<acc>(p0);
    for_each_offset(g, [&](const int64_t (&k)[3]) {
      gx[k[0]] = convert<scalar_t>(unary_backward<acc>(op, convert<acc>(gy[k[1]]), convert<acc>(s[k[2]]), a0));
    });
  });
}

}  // namespace tg::cpu
