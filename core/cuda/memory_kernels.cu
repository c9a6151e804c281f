// CUDA memory kernels: strided copy with dtype conversion, fill, Philox random fills (the same
// streams as core/cpu/memory_kernels.cpp), and host<->device transfers.
#include <cuda_runtime.h>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "core/memory_kernels.h"
#include "core/philox.h"
#include "core/strided.h"

namespace tg::kernels {

namespace {

template <class Dst, class Src>
__global__ void copy_strided_kernel(CopyGeometry g, Dst* dst, const Src* src, int64_t numel) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t dst_offset, src_offset;
    g.offsets(i, dst_offset, src_offset);
    dst[dst_offset] = convert<Dst>(src[src_offset]);
  }
}

template <class Dst, class Src>
__global__ void copy_contiguous_kernel(Dst* dst, const Src* src, int64_t numel) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = convert<Dst>(src[i]);
}

template <class T>
__global__ void fill_kernel(CopyGeometry g, T* dst, T value, int64_t numel) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t dst_offset, unused;
    g.offsets(i, dst_offset, unused);
    dst[dst_offset] = value;
  }
}

template <class T>
__global__ void random_kernel(T* out, int64_t numel, bool normal, uint64_t seed,
                              uint64_t first_block, double a, double b) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t index = static_cast<uint64_t>(i);
    const double value =
        normal ? a + b * static_cast<double>(philox::normal_element(seed, first_block, index))
               : a + (b - a) * static_cast<double>(philox::uniform_element(seed, first_block, index));
    out[i] = convert<T>(value);
  }
}

}  // namespace

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
  const CopyGeometry g = make_copy_geometry(dst.shape(), dst.strides(), src.strides());
  TG_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using dst_t = scalar_t;
    TG_DISPATCH_ALL(src.dtype(), "copy", [&] {
      auto* out = static_cast<dst_t*>(dst.raw_data());
      const auto* in = static_cast<const scalar_t*>(src.raw_data());
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
  const CopyGeometry g = make_copy_geometry(dst.shape(), dst.strides(), dst.strides());
  TG_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    fill_kernel<<<grid_for(numel), kBlockSize, 0, current_stream()>>>(
        g, static_cast<scalar_t*>(dst.raw_data()), convert<scalar_t>(value), numel);
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
