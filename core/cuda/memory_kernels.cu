// CUDA memory kernels: strided copy with dtype conversion, fill, Philox random fills (the same
// streams as core/cpu/memory_kernels.cpp), and host<->device transfers.
#include <cuda_runtime.h>

#include <array>
#include <optional>
#include <vector>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "core/cuda/multi_tensor.cuh"
#include "core/cuda/vector_map.cuh"
#include "core/memory_kernels.h"
#include "core/philox.h"
#include "core/strided.h"

namespace tg::kernels {

namespace {

template <class Dst, class Src>
__global__ void copy_strided_kernel(StridedGeometry<2> g, Dst* dst, const Src* src, int64_t numel) {
  TG_GRID_STRIDE_LOOP(i, numel) {
    int64_t o[2];
    g.offsets(i, o);
    dst[o[0]] = convert<Dst>(src[o[1]]);
  }
}

template <class Dst, class Src>
__global__ void copy_contiguous_kernel(Dst* dst, const Src* src, int64_t numel) {
  TG_GRID_STRIDE_LOOP(i, numel)
    dst[i] = convert<Dst>(src[i]);
}

template <class Dst, class Src>
struct Convert {
  __device__ Dst operator()(Src x) const { return convert<Dst>(x); }
};

template <class T>
struct Add {
  __device__ T operator()(T a, T b) const { return convert<T>(convert<acc_t<T>>(a) + convert<acc_t<T>>(b)); }
};

template <class T>
__global__ void fill_kernel(StridedGeometry<1> g, T* dst, T value, int64_t numel) {
  TG_GRID_STRIDE_LOOP(i, numel) {
    int64_t o[1];
    g.offsets(i, o);
    dst[o[0]] = value;
  }
}

template <class T>
__global__ void accumulate_kernel(StridedGeometry<2> g, T* dst, const T* src, int64_t numel) {
  using acc = acc_t<T>;
  TG_GRID_STRIDE_LOOP(i, numel) {
    int64_t o[2];
    g.offsets(i, o);
    dst[o[0]] = convert<T>(convert<acc>(dst[o[0]]) + convert<acc>(src[o[1]]));
  }
}

template <class T>
__global__ void random_kernel(T* out, int64_t numel, bool normal, uint64_t seed,
                              uint64_t first_block, double a, double b) {
  TG_GRID_STRIDE_LOOP(i, numel) {
    const uint64_t index = static_cast<uint64_t>(i);
    const double value =
        normal ? a + b * static_cast<double>(philox::normal_element(seed, first_block, index))
               : a + (b - a) * static_cast<double>(philox::uniform_element(seed, first_block, index));
    out[i] = convert<T>(value);
  }
}

// The geometry of a same-dtype copy in 16-byte units, when the innermost dim is contiguous on
// both sides and its length, every other stride and both addresses are multiples of 16 bytes:
// the attention layout changes ([B, T, H, hd] <-> [B, H, T, hd]) then move 16-byte vectors
// and compute a quarter as many offsets (f32). nullopt when the copy does not qualify.
std::optional<StridedGeometry<2>> vector_geometry(StridedGeometry<2> g, const Tensor& dst, const Tensor& src) {
  const auto itemsize = static_cast<int64_t>(dst.itemsize());
  const int64_t per_vector = 16 / itemsize;
  const int last = g.ndim - 1;
  if (last < 0 || 16 % itemsize != 0) return std::nullopt;
  if (reinterpret_cast<uintptr_t>(dst.raw_data()) % 16 != 0 || reinterpret_cast<uintptr_t>(src.raw_data()) % 16 != 0)
    return std::nullopt;
  if (g.strides[0][last] != 1 || g.strides[1][last] != 1 || g.sizes[last] % per_vector != 0) return std::nullopt;
  for (int d = 0; d < last; ++d)
    for (int k = 0; k < 2; ++k)
      if (g.strides[k][d] % per_vector != 0) return std::nullopt;
  g.sizes[last] /= per_vector;
  for (int d = 0; d < last; ++d)
    for (int k = 0; k < 2; ++k) g.strides[k][d] /= per_vector;
  g.index_fits_32_bits = dst.numel() / per_vector <= static_cast<int64_t>(UINT32_MAX);
  return g;
}

// targets[t][i] = convert(sources[t][i]) for the list's tensors (multi_tensor.cuh), one chunk per
// block.
template <class Dst, class Src>
__global__ void __launch_bounds__(kBlockSize) convert_many_kernel(cuda::ChunkList<2> list) {
  const cuda::ChunkSpan span = cuda::chunk_span(list);
  auto* out = static_cast<Dst*>(list.data[0][span.tensor]);
  const auto* in = static_cast<const Src*>(list.data[1][span.tensor]);
  for (int64_t i = span.begin + threadIdx.x; i < span.end; i += kBlockSize) out[i] = convert<Dst>(in[i]);
}

}  // namespace

void convert_many_cuda(const std::vector<Tensor>& targets, const std::vector<Tensor>& sources) {
  if (targets.empty()) return;
  DeviceGuard guard(targets[0].device().index);
  std::vector<std::array<const Tensor*, 2>> operands;
  for (size_t t = 0; t < targets.size(); ++t) operands.push_back({&targets[t], &sources[t]});
  const DType target_dtype = targets[0].dtype();
  cuda::for_each_chunk_list<2>(operands, [&](DType, const cuda::ChunkList<2>& list, int64_t chunks, int64_t) {
    // The groups are by the targets' dtype (one), so the sources' is read from the first tensor.
    const DType source_dtype = sources[0].dtype();
    TG_DISPATCH_FLOATING(target_dtype, "convert_many", [&] {
      using dst_t = scalar_t;
      TG_DISPATCH_FLOATING(source_dtype, "convert_many", [&] {
        convert_many_kernel<dst_t, scalar_t><<<static_cast<unsigned>(chunks), kBlockSize, 0, current_stream()>>>(list);
        TG_CUDA_CHECK_LAUNCH();
      });
    });
  });
}

void copy_cuda(const Tensor& dst, const Tensor& src) {
  const int64_t numel = dst.numel();
  if (numel == 0) return;
  DeviceGuard guard(dst.device().index);
  const cudaStream_t stream = current_stream();
  const bool both_contiguous = dst.is_contiguous() && src.is_contiguous();
  if (dst.dtype() == src.dtype() && both_contiguous) {
    TG_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(),
                                  cudaMemcpyDeviceToDevice, stream));
    return;
  }
  const auto g = make_geometry<2>(dst.shape(), {&dst.strides(), &src.strides()});
  if (dst.dtype() == src.dtype()) {
    if (const auto vectors = vector_geometry(g, dst, src)) {
      const int64_t count = numel * static_cast<int64_t>(dst.itemsize()) / 16;
      copy_strided_kernel<<<grid_for(count), kBlockSize, 0, stream>>>(*vectors, static_cast<uint4*>(dst.raw_data()),
                                                                     static_cast<const uint4*>(src.raw_data()), count);
      TG_CUDA_CHECK_LAUNCH();
      return;
    }
  }
  TG_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using dst_t = scalar_t;
    TG_DISPATCH_ALL(src.dtype(), "copy", [&] {
      auto* out = static_cast<dst_t*>(dst.raw_data());
      const auto* in = static_cast<const scalar_t*>(src.raw_data());
      if (both_contiguous && vector_map_applies({out, in}))
        return vector_map(stream, out, in, numel, Convert<dst_t, scalar_t>{});
      if (both_contiguous)
        copy_contiguous_kernel<<<grid_for(numel), kBlockSize, 0, stream>>>(out, in, numel);
      else
        copy_strided_kernel<<<grid_for(numel), kBlockSize, 0, stream>>>(g, out, in, numel);
      TG_CUDA_CHECK_LAUNCH();
    });
  });
}

void fill_cuda(const Tensor& dst, double value) {
  const int64_t numel = dst.numel();
  if (numel == 0) return;
  DeviceGuard guard(dst.device().index);
  const auto g = make_geometry<1>(dst.shape(), {&dst.strides()});
  TG_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    fill_kernel<<<grid_for(numel), kBlockSize, 0, current_stream()>>>(
        g, static_cast<scalar_t*>(dst.raw_data()), convert<scalar_t>(value), numel);
    TG_CUDA_CHECK_LAUNCH();
  });
}

void accumulate_cuda(const Tensor& dst, const Tensor& src) {
  const int64_t numel = dst.numel();
  if (numel == 0) return;
  DeviceGuard guard(dst.device().index);
  const auto g = make_geometry<2>(dst.shape(), {&dst.strides(), &src.strides()});
  TG_DISPATCH_FLOATING(dst.dtype(), "accumulate", [&] {
    auto* d = static_cast<scalar_t*>(dst.raw_data());
    const auto* s = static_cast<const scalar_t*>(src.raw_data());
    if (dst.is_contiguous() && src.is_contiguous() && vector_map_applies({d, s}))
      return vector_map(current_stream(), d, d, s, numel, Add<scalar_t>{});
    accumulate_kernel<<<grid_for(numel), kBlockSize, 0, current_stream()>>>(
        g, static_cast<scalar_t*>(dst.raw_data()), static_cast<const scalar_t*>(src.raw_data()), numel);
    TG_CUDA_CHECK_LAUNCH();
  });
}

void random_cuda(const Tensor& dst, Distribution distribution, uint64_t seed, uint64_t first_block,
                 double a, double b) {
  TG_INTERNAL_ASSERT(dst.is_contiguous(), "random fills write contiguous tensors");
  const int64_t numel = dst.numel();
  if (numel == 0) return;
  DeviceGuard guard(dst.device().index);
  TG_DISPATCH_FLOATING(dst.dtype(), "random", [&] {
    random_kernel<<<grid_for(numel), kBlockSize, 0, current_stream()>>>(
        static_cast<scalar_t*>(dst.raw_data()), numel, distribution == Distribution::normal, seed,
        first_block, a, b);
    TG_CUDA_CHECK_LAUNCH();
  });
}

void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device_index) {
  DeviceGuard guard(device_index);
  TG_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, current_stream()));
  TG_CUDA_CHECK(cudaStreamSynchronize(current_stream()));  // the host buffer may be freed next
}

void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device_index) {
  DeviceGuard guard(device_index);
  TG_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, current_stream()));
  TG_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
}

}  // namespace tg::kernels
