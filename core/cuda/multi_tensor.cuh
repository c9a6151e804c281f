// Multi-tensor launches (as apex's and PyTorch's foreach kernels do): up to kListSize tensors of
// one dtype per launch, passed by value as the kernel's argument — no pointer table to copy to the
// device, so the launches capture into CUDA graphs as they are — each with N operands of its
// shape (Adam: parameter, gradient and the two moments; a conversion: source and target). Every
// tensor is cut into chunks of kChunk elements and each block takes one chunk, so a block's share,
// and the order of any sum over it, depend only on the shapes: the same bits on every run. Used
// by the optimizers and clipping (nn/cuda/optim.cu) and the many-tensor conversion
// (core/cuda/memory_kernels.cu).
#pragma once

#include <algorithm>
#include <array>
#include <map>
#include <vector>

#include "core/cuda/launch.h"
#include "core/tensor.h"

namespace tg::cuda {

inline constexpr int kListSize = 48;
inline constexpr int64_t kChunk = 64 * kBlockSize;

template <int N>
struct ChunkList {
  void* data[N][kListSize];  // data[n][t]: operand n of tensor t
  int64_t numel[kListSize];
  int64_t chunk_begin[kListSize + 1];  // chunk_begin[t]: first chunk of tensor t within this launch
};

inline int64_t chunks_of(const Tensor& t) { return (t.numel() + kChunk - 1) / kChunk; }

struct ChunkSpan {
  int tensor;
  int64_t begin, end;  // elements of the tensor
};

template <int N>
__device__ ChunkSpan chunk_span(const ChunkList<N>& list) {
  const int64_t chunk = blockIdx.x;
  int t = 0;
  while (chunk >= list.chunk_begin[t + 1]) ++t;
  const int64_t begin = (chunk - list.chunk_begin[t]) * kChunk;
  return {t, begin, min(begin + kChunk, list.numel[t])};
}

// fn(dtype, list, chunks, first_chunk) for consecutive groups of same-dtype tensors (each entry:
// its N operands, of the first one's shape and dtype); first_chunk numbers the launch's chunks
// across all groups.
template <int N, class F>
void for_each_chunk_list(const std::vector<std::array<const Tensor*, N>>& tensors, F&& fn) {
  std::map<DType, std::vector<const std::array<const Tensor*, N>*>> by_dtype;
  for (const auto& operands : tensors)
    if (operands[0]->numel() > 0) by_dtype[operands[0]->dtype()].push_back(&operands);
  int64_t first_chunk = 0;
  for (const auto& [dtype, group] : by_dtype) {
    for (size_t start = 0; start < group.size(); start += kListSize) {
      ChunkList<N> list{};
      const int count = static_cast<int>(std::min<size_t>(kListSize, group.size() - start));
      for (int t = 0; t < count; ++t) {
        const auto& operands = *group[start + static_cast<size_t>(t)];
        for (int n = 0; n < N; ++n) list.data[n][t] = operands[static_cast<size_t>(n)]->raw_data();
        list.numel[t] = operands[0]->numel();
        list.chunk_begin[t + 1] = list.chunk_begin[t] + chunks_of(*operands[0]);
      }
      for (int t = count; t < kListSize; ++t) list.chunk_begin[t + 1] = list.chunk_begin[t];
      fn(dtype, list, list.chunk_begin[count], first_chunk);
      first_chunk += list.chunk_begin[count];
    }
  }
}

// The one-operand form, over whole tensors.
template <class F>
void for_each_chunk_list(const std::vector<Tensor>& tensors, F&& fn) {
  std::vector<std::array<const Tensor*, 1>> operands;
  for (const Tensor& t : tensors) operands.push_back({&t});
  for_each_chunk_list<1>(operands, fn);
}

inline int64_t total_chunks(const std::vector<Tensor>& tensors) {
  int64_t chunks = 0;
  for (const Tensor& t : tensors) chunks += chunks_of(t);
  return chunks;
}

}  // namespace tg::cuda
