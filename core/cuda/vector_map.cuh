// Elementwise maps over contiguous operands with 16-byte loads and stores: each thread maps
// kWidth consecutive elements (16 bytes of the widest operand type), the last n % kWidth
// elements one by one. Used where every operand is contiguous and 16-byte aligned
// (vector_map_applies); the strided kernels cover the rest.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "core/cuda/cuda_check.h"
#include "core/cuda/launch.h"

namespace tg {

template <class... T>
inline constexpr size_t kWidestSize = [] {
  size_t widest = 0;
  for (size_t size : {sizeof(T)...}) widest = size > widest ? size : widest;
  return widest;
}();

// Elements per thread: 16 bytes of the widest operand type.
template <class... T>
inline constexpr int kVectorWidth = static_cast<int>(16 / kWidestSize<T...>);

template <int W, class T>
struct alignas(sizeof(T) * W) Vector {
  T v[W];
};

// True when every pointer is 16-byte aligned (then every Vector access is aligned too).
inline bool vector_map_applies(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

namespace detail {

template <class Out, class In, class F>
__global__ void vector_map1_kernel(Out* out, const In* in, int64_t n, F f) {
  constexpr int W = kVectorWidth<Out, In>;
  const int64_t vectors = n / W;
  TG_GRID_STRIDE_LOOP(i, vectors) {
    const Vector<W, In> x = reinterpret_cast<const Vector<W, In>*>(in)[i];
    Vector<W, Out> y;
#pragma unroll
    for (int j = 0; j < W; ++j) y.v[j] = f(x.v[j]);
    reinterpret_cast<Vector<W, Out>*>(out)[i] = y;
  }
  TG_GRID_STRIDE_LOOP(i, n - vectors * W) out[vectors * W + i] = f(in[vectors * W + i]);
}

template <class Out, class A, class B, class F>
__global__ void vector_map2_kernel(Out* out, const A* a, const B* b, int64_t n, F f) {
  constexpr int W = kVectorWidth<Out, A, B>;
  const int64_t vectors = n / W;
  TG_GRID_STRIDE_LOOP(i, vectors) {
    const Vector<W, A> x = reinterpret_cast<const Vector<W, A>*>(a)[i];
    const Vector<W, B> z = reinterpret_cast<const Vector<W, B>*>(b)[i];
    Vector<W, Out> y;
#pragma unroll
    for (int j = 0; j < W; ++j) y.v[j] = f(x.v[j], z.v[j]);
    reinterpret_cast<Vector<W, Out>*>(out)[i] = y;
  }
  TG_GRID_STRIDE_LOOP(i, n - vectors * W) out[vectors * W + i] = f(a[vectors * W + i], b[vectors * W + i]);
}

}  // namespace detail

// out[i] = f(in[i]) for i < n on `stream`; the pointers are 16-byte aligned (vector_map_applies).
// f is a device functor (no extended lambdas in this build).
template <class Out, class In, class F>
void vector_map(cudaStream_t stream, Out* out, const In* in, int64_t n, F f) {
  const int64_t threads = n / kVectorWidth<Out, In> + 1;
  detail::vector_map1_kernel<<<grid_for(threads), kBlockSize, 0, stream>>>(out, in, n, f);
  TG_CUDA_CHECK_LAUNCH();
}

// out[i] = f(a[i], b[i]) for i < n.
template <class Out, class A, class B, class F>
void vector_map(cudaStream_t stream, Out* out, const A* a, const B* b, int64_t n, F f) {
  const int64_t threads = n / kVectorWidth<Out, A, B> + 1;
  detail::vector_map2_kernel<<<grid_for(threads), kBlockSize, 0, stream>>>(out, a, b, n, f);
  TG_CUDA_CHECK_LAUNCH();
}

}  // namespace tg
