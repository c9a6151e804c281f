// CUDA kernels of the elementwise family: one grid-stride pass per op. Contiguous, aligned
// operands (the common case) take 16-byte vector loads and stores (core/cuda/vector_map.cuh);
// others get their offsets from the strided geometry.
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "core/cuda/vector_map.cuh"
#include "core/strided.h"
#include "ops/elementwise_kernels.h"

namespace tg::cuda {

namespace {

template <class T>
__global__ void binary_kernel(StridedGeometry<3> g, BinaryOp op, T* out, const T* a, const T* b, int64_t n) {
  using acc = acc_t<T>;
  TG_GRID_STRIDE_LOOP(i, n) {
    int64_t k[3];
    g.offsets(i, k);
    out[k[0]] = convert<T>(binary_apply<acc>(op, convert<acc>(a[k[1]]), convert<acc>(b[k[2]])));
  }
}

template <class T>
__global__ void unary_kernel(StridedGeometry<2> g, UnaryOp op, T* out, const T* x, acc_t<T> p0, acc_t<T> p1,
                             int64_t n) {
  using acc = acc_t<T>;
  TG_GRID_STRIDE_LOOP(i, n) {
    int64_t k[2];
    g.offsets(i, k);
    out[k[0]] = convert<T>(unary_apply<acc>(op, convert<acc>(x[k[1]]), p0, p1));
  }
}

template <class T>
__global__ void unary_backward_kernel(StridedGeometry<3> g, UnaryOp op, T* grad_x, const T* grad_y,
                                      const T* saved, acc_t<T> p0, int64_t n) {
  using acc = acc_t<T>;
  TG_GRID_STRIDE_LOOP(i, n) {
    int64_t k[3];
    g.offsets(i, k);
    grad_x[k[0]] = convert<T>(unary_backward<acc>(op, convert<acc>(grad_y[k[1]]), convert<acc>(saved[k[2]]), p0));
  }
}

template <class T>
struct BinaryMap {
  BinaryOp op;
  __device__ T operator()(T a, T b) const {
    using acc = acc_t<T>;
    return convert<T>(binary_apply<acc>(op, convert<acc>(a), convert<acc>(b)));
  }
};

// a + b, b converted to a's type first (as add(a, cast(b)) rounds it).
template <class T, class B>
struct AddConvertedMap {
  __device__ T operator()(T a, B b) const {
    return convert<T>(convert<acc_t<T>>(a) + convert<acc_t<T>>(convert<T>(b)));
  }
};

template <class T, class B>
__global__ void add_converted_kernel(T* out, const T* a, const B* b, int64_t n) {
  const AddConvertedMap<T, B> add;
  TG_GRID_STRIDE_LOOP(i, n) out[i] = add(a[i], b[i]);
}

// The op is a template argument: its switch folds away, and the unrolled loop over a vector's
// elements compiles to straight-line math (with the op as a runtime value, GELU ran at half the
// rate of PyTorch's kernel).
template <class T, UnaryOp kOp>
struct UnaryMap {
  acc_t<T> p0, p1;
  __device__ T operator()(T x) const { return convert<T>(unary_apply<acc_t<T>>(kOp, convert<acc_t<T>>(x), p0, p1)); }
};

template <class T, UnaryOp kOp>
struct UnaryBackwardMap {
  acc_t<T> p0;
  __device__ T operator()(T grad_y, T saved) const {
    using acc = acc_t<T>;
    return convert<T>(unary_backward<acc>(kOp, convert<acc>(grad_y), convert<acc>(saved), p0));
  }
};

// f(std::integral_constant<UnaryOp, op>{}).
template <class F>
void with_unary_op(UnaryOp op, F&& f) {
  using U = UnaryOp;
  switch (op) {
    case U::affine: return f(std::integral_constant<U, U::affine>{});
    case U::exp: return f(std::integral_constant<U, U::exp>{});
    case U::log: return f(std::integral_constant<U, U::log>{});
    case U::sqrt: return f(std::integral_constant<U, U::sqrt>{});
    case U::tanh: return f(std::integral_constant<U, U::tanh>{});
    case U::relu: return f(std::integral_constant<U, U::relu>{});
    case U::gelu_erf: return f(std::integral_constant<U, U::gelu_erf>{});
    case U::gelu_tanh: return f(std::integral_constant<U, U::gelu_tanh>{});
  }
  TG_INTERNAL_ASSERT(false, "unknown unary op ", static_cast<int>(op));
}

// Every operand walks the iteration in order with unit stride.
template <int N>
bool contiguous(const StridedGeometry<N>& g) {
  if (g.ndim > 1) return false;
  for (int k = 0; k < N && g.ndim == 1; ++k)
    if (g.strides[k][0] != 1) return false;
  return true;
}

}  // namespace

void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(out.device().index);
  const auto g = make_geometry<3>(out.shape(), {&out.strides(), &a.strides(), &b.strides()});
  TG_DISPATCH_FLOATING(out.dtype(), "binary", [&] {
    auto* o = static_cast<scalar_t*>(out.raw_data());
    const auto* x = static_cast<const scalar_t*>(a.raw_data());
    const auto* y = static_cast<const scalar_t*>(b.raw_data());
    if (contiguous(g) && vector_map_applies({o, x, y}))
      return vector_map(current_stream(), o, x, y, n, BinaryMap<scalar_t>{op});
    binary_kernel<scalar_t><<<grid_for(n), kBlockSize, 0, current_stream()>>>(g, op, o, x, y, n);
    TG_CUDA_CHECK_LAUNCH();
  });
}

void add_converted(const Tensor& out, const Tensor& a, const Tensor& b) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(out.device().index);
  TG_DISPATCH_FLOATING(out.dtype(), "add", [&] {
    using out_t = scalar_t;
    TG_DISPATCH_FLOATING(b.dtype(), "add", [&] {
      auto* o = static_cast<out_t*>(out.raw_data());
      const auto* x = static_cast<const out_t*>(a.raw_data());
      const auto* y = static_cast<const scalar_t*>(b.raw_data());
      if (vector_map_applies({o, x, y}))
        return vector_map(current_stream(), o, x, y, n, AddConvertedMap<out_t, scalar_t>{});
      add_converted_kernel<<<grid_for(n), kBlockSize, 0, current_stream()>>>(o, x, y, n);
      TG_CUDA_CHECK_LAUNCH();
    });
  });
}

void unary(UnaryOp op, const Tensor& out, const Tensor& x, double p0, double p1) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(out.device().index);
  const auto g = make_geometry<2>(out.shape(), {&out.strides(), &x.strides()});
  TG_DISPATCH_FLOATING(out.dtype(), "unary", [&] {
    using acc = acc_t<scalar_t>;
    auto* o = static_cast<scalar_t*>(out.raw_data());
    const auto* in = static_cast<const scalar_t*>(x.raw_data());
    const acc a0 = static_cast<acc>(p0), a1 = static_cast<acc>(p1);
    if (contiguous(g) && vector_map_applies({o, in})) {
      return with_unary_op(op, [&](auto fixed) {
        vector_map(current_stream(), o, in, n, UnaryMap<scalar_t, decltype(fixed)::value>{a0, a1});
      });
    }
    unary_kernel<scalar_t><<<grid_for(n), kBlockSize, 0, current_stream()>>>(g, op, o, in, a0, a1, n);
    TG_CUDA_CHECK_LAUNCH();
  });
}

void unary_backward(UnaryOp op, const Tensor& grad_x, const Tensor& grad_y, const Tensor& saved, double p0) {
  const int64_t n = grad_x.numel();
  if (n == 0) return;
  DeviceGuard guard(grad_x.device().index);
  const auto g = make_geometry<3>(grad_x.shape(), {&grad_x.strides(), &grad_y.strides(), &saved.strides()});
  TG_DISPATCH_FLOATING(grad_x.dtype(), "unary_backward", [&] {
    using acc = acc_t<scalar_t>;
    auto* gx = static_cast<scalar_t*>(grad_x.raw_data());
    const auto* gy = static_cast<const scalar_t*>(grad_y.raw_data());
    const auto* s = static_cast<const scalar_t*>(saved.raw_data());
    const acc a0 = static_cast<acc>(p0);
    if (contiguous(g) && vector_map_applies({gx, gy, s})) {
      return with_unary_op(op, [&](auto fixed) {
        vector_map(current_stream(), gx, gy, s, n, UnaryBackwardMap<scalar_t, decltype(fixed)::value>{a0});
      });
    }
    unary_backward_kernel<scalar_t><<<grid_for(n), kBlockSize, 0, current_stream()>>>(g, op, gx, gy, s, a0, n);
    TG_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace tg::cuda
