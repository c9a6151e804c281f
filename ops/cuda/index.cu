// CUDA kernels of index_select. Forward: a row gather that moves bytes in the widest vector
// (up to 16 B) the row size and alignment allow, so it serves every dtype. Backward: a
// deterministic scatter-add without atomics: the (index, position) pairs are radix-sorted
// (stable, so positions ascend within a run of equal indices), then the first thread of each
// run sums that run's gradient rows in order and writes the destination row once. Everything
// is sized from host-known counts: no synchronization, no device-to-host copy. Out-of-range
// indices cannot be reported without one, so they are clamped away: zero rows forward, skipped
// backward.
#include <cub/device/device_radix_sort.cuh>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "core/strided.h"
#include "ops/index_kernels.h"

namespace tg::cuda {

namespace {

// out[o, k, :] = x[o, indices[k], :] in units of Vec; `row` Vecs per row.
template <class Vec, class Index>
__global__ void gather_rows_kernel(Vec* out, const Vec* x, const Index* indices, IndexShape s, int64_t row) {
  TG_GRID_STRIDE_LOOP(i, s.outer * s.count * row) {
    const int64_t v = i % row, ok = i / row;
    const int64_t k = ok % s.count, o = ok / s.count;
    const int64_t src = static_cast<int64_t>(indices[k]);
    out[i] = src >= 0 && src < s.size ? x[(o * s.size + src) * row + v] : Vec{};
  }
}

template <class Vec, class Index>
void launch_gather(const Tensor& out, const Tensor& x, const Index* indices, IndexShape s, int64_t row_bytes) {
  const int64_t row = row_bytes / static_cast<int64_t>(sizeof(Vec));
  gather_rows_kernel<<<grid_for(s.outer * s.count * row), kBlockSize, 0, current_stream()>>>(
      static_cast<Vec*>(out.raw_data()), static_cast<const Vec*>(x.raw_data()), indices, s, row);
  TG_CUDA_CHECK_LAUNCH();
}

__global__ void iota_kernel(int64_t* out, int64_t n) {
  TG_GRID_STRIDE_LOOP(i, n) out[i] = i;
}

// One thread per (outer, sorted position, column); the head of each run of equal indices sums
// the run's gradient rows in sorted (= increasing position) order and writes the destination.
template <class T, class Index>
__global__ void scatter_add_runs_kernel(T* grad_x, const T* grad_out, const Index* keys, const int64_t* positions,
                                        IndexShape s) {
  using acc = acc_t<T>;
  TG_GRID_STRIDE_LOOP(i, s.outer * s.count * s.inner) {
    const int64_t c = i % s.inner, op = i / s.inner;
    const int64_t p = op % s.count, o = op / s.count;
    const Index dest = keys[p];
    if ((p > 0 && keys[p - 1] == dest) || dest < 0 || static_cast<int64_t>(dest) >= s.size) continue;
    acc total = 0;
    for (int64_t q = p; q < s.count && keys[q] == dest; ++q)
      total += convert<acc>(grad_out[(o * s.count + positions[q]) * s.inner + c]);
    grad_x[(o * s.size + dest) * s.inner + c] = convert<T>(total);
  }
}

}  // namespace

void index_select(const Tensor& out, const Tensor& x, const Tensor& indices, IndexShape s) {
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device().index);
  const auto row_bytes = static_cast<int64_t>(static_cast<size_t>(s.inner) * x.itemsize());
  // The widest vector that divides the row and both base addresses.
  const auto alignment = reinterpret_cast<uintptr_t>(x.raw_data()) | reinterpret_cast<uintptr_t>(out.raw_data()) |
                         static_cast<uintptr_t>(row_bytes);
  dispatch_index_type(indices.dtype(), [&](auto tag) {
    const auto* idx = static_cast<const decltype(tag)*>(indices.raw_data());
    if (alignment % 16 == 0) launch_gather<uint4>(out, x, idx, s, row_bytes);
    else if (alignment % 8 == 0) launch_gather<uint2>(out, x, idx, s, row_bytes);
    else if (alignment % 4 == 0) launch_gather<uint32_t>(out, x, idx, s, row_bytes);
    else if (alignment % 2 == 0) launch_gather<uint16_t>(out, x, idx, s, row_bytes);
    else launch_gather<uint8_t>(out, x, idx, s, row_bytes);
  });
}

void index_select_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices, IndexShape s) {
  if (grad_out.numel() == 0) return;
  DeviceGuard guard(grad_x.device().index);
  const cudaStream_t stream = current_stream();
  const Device device = grad_x.device();
  const Tensor positions = empty({s.count}, DType::i64, device);
  const Tensor sorted_positions = empty({s.count}, DType::i64, device);
  const Tensor sorted_keys = empty({s.count}, indices.dtype(), device);
  iota_kernel<<<grid_for(s.count), kBlockSize, 0, stream>>>(positions.data<int64_t>(), s.count);
  TG_CUDA_CHECK_LAUNCH();
  dispatch_index_type(indices.dtype(), [&](auto tag) {
    using Index = decltype(tag);
    const auto* keys_in = static_cast<const Index*>(indices.raw_data());
    auto* keys_out = static_cast<Index*>(sorted_keys.raw_data());
    // All key bits are sorted, so that negative and too-large indices form runs of their own.
    size_t temp_bytes = 0;
    TG_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, positions.data<int64_t>(),
                                                  sorted_positions.data<int64_t>(), s.count, 0,
                                                  static_cast<int>(sizeof(Index) * 8), stream));
    // Never empty: a null temporary pointer would make cub only report the size again.
    const Tensor temp = empty({std::max<int64_t>(static_cast<int64_t>(temp_bytes), 1)}, DType::u8, device);
    TG_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw_data(), temp_bytes, keys_in, keys_out,
                                                  positions.data<int64_t>(), sorted_positions.data<int64_t>(),
                                                  s.count, 0, static_cast<int>(sizeof(Index) * 8), stream));
    TG_DISPATCH_FLOATING(grad_x.dtype(), "index_select_backward", [&] {
      scatter_add_runs_kernel<<<grid_for(s.outer * s.count * s.inner), kBlockSize, 0, stream>>>(
          static_cast<scalar_t*>(grad_x.raw_data()), static_cast<const scalar_t*>(grad_out.raw_data()), keys_out,
          sorted_positions.data<int64_t>(), s);
      TG_CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace tg::cuda
