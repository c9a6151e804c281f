// CUDA kernels of the sampling family: the row sampler (WTA-CRS, CRS, top-k, WTA-WOR). A sort orders every item's rows
// by descending score, then one block per item computes the probabilities, the tail sums and
// the winner rule, draws by inverse CDF, merges duplicates and writes the slots. Items of up to
// 4,352 rows do all of it in one launch, sorted by a block radix sort into shared memory; longer
// ones are sorted by CUB's device-wide (one item) or segmented (several) radix sort and staged
// into shared memory for the selection when they fit (global scratch beyond). No host synchronisation: sizes are known on the host, decisions are made on
// the device. The double-precision sums follow the chunked order of ops/matmul/
// sampling_kernels.h (thread t owns chunk t), which ops/cpu/sampling.cpp mirrors.
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <mutex>
#include <set>
#include <utility>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "ops/matmul/sampling_kernels.h"

namespace tg::cuda {

namespace {

using sampling::chunk_begin;
constexpr int kThreads = sampling::kSampleChunks;  // thread t sums chunk t

__global__ void row_iota_kernel(int32_t* rows, int64_t K, int64_t n) {
  TG_GRID_STRIDE_LOOP(i, n) rows[i] = static_cast<int32_t>(i % K);
}

// Segment b of the sort is [b * K, (b + 1) * K).
struct SegmentStart {
  int K;
  __host__ __device__ int operator()(int b) const { return b * K; }
};

// A candidate of the winner rule; the reduction keeps the smallest ratio, then the smallest c
// (the first minimum, as the CPU's sequential scan finds it).
struct Candidate {
  double ratio;
  int64_t c;
};
struct FirstMinimum {
  __device__ Candidate operator()(const Candidate& a, const Candidate& b) const {
    return b.ratio < a.ratio || (b.ratio == a.ratio && b.c < a.c) ? b : a;
  }
};

struct Smaller {
  __device__ long long operator()(long long a, long long b) const { return b < a ? b : a; }
};

// One item's rows sorted by descending score, with the selection's scratch: in shared memory
// when the item fits (every pass, and above all the draws' bisections, then stays on chip),
// else in global memory.
struct ItemArrays {
  const float* score;
  const int32_t* rows;
  double* tail;    // tail[r] = Σ_{r' >= r} p_(r')
  int32_t* count;  // how often position r was drawn
};

// An item staged in shared memory: tail (f64) first for alignment, then score, rows, count.
__host__ __device__ constexpr size_t staged_bytes(int64_t K) {
  return static_cast<size_t>(K) * (sizeof(double) + sizeof(float) + 2 * sizeof(int32_t));
}
struct StagedItem {
  double* tail;
  float* score;
  int32_t* rows;
  int32_t* count;
  __device__ StagedItem(unsigned char* smem, int64_t K)
      : tail(reinterpret_cast<double*>(smem)), score(reinterpret_cast<float*>(tail + K)),
        rows(reinterpret_cast<int32_t*>(score + K)), count(rows + K) {}
  __device__ ItemArrays arrays() const { return {score, rows, tail, count}; }
};

// Chunk sums combined in chunk order by one thread (the order the CPU mirrors). Chunks past
// `used` are empty and would add zeros, which leave a sum of non-negative terms unchanged.
__device__ double ordered_sum(const double* partial, int used) {
  double total = 0;
#pragma unroll 8
  for (int c = 0; c < used; ++c) total += partial[c];
  return total;
}

// The selection of item b (one block of kThreads): probabilities, tail sums, the winner rule,
// the draws by inverse CDF, merging duplicates and writing the k slots.
__device__ void select_item(int32_t* slot_index, float* slot_weight, const ItemArrays& a, int64_t K,
                            const SamplingConfig& config, uint64_t seed, sampling::DrawStream stream, int64_t b) {
  const uint64_t subsequence = stream.subsequence();
  using BlockReduce = cub::BlockReduce<Candidate, kThreads>;
  using BlockMin = cub::BlockReduce<long long, kThreads>;
  using BlockScan = cub::BlockScan<int, kThreads>;
  __shared__ union {
    typename BlockReduce::TempStorage reduce;
    typename BlockMin::TempStorage min;
    typename BlockScan::TempStorage scan;
  } temp;
  __shared__ double partial[kThreads + 1];  // chunk sums, then carries into each chunk
  __shared__ double total_score;
  __shared__ int64_t shared_winners;
  __shared__ int32_t first_row;

  const int64_t k = config.k, t = threadIdx.x;
  const float* score = a.score;
  const int32_t* rows = a.rows;
  double* tail = a.tail;
  int32_t* count = a.count;
  const int64_t lo = chunk_begin(K, t), hi = chunk_begin(K, t + 1);
  const int64_t chunk_length = (K + kThreads - 1) / kThreads;
  const int used_chunks = static_cast<int>((K + chunk_length - 1) / chunk_length);

  // Σ s: each chunk forwards, then the chunk sums in order.
  double chunk = 0;
  for (int64_t r = lo; r < hi; ++r) chunk += static_cast<double>(score[r]);
  partial[t] = chunk;
  __syncthreads();
  if (t == 0) total_score = ordered_sum(partial, used_chunks);
  __syncthreads();
  const sampling::Probability prob{1.0 - config.alpha, config.alpha / static_cast<double>(K),
                                   1.0 / static_cast<double>(K), total_score};

  // Tail sums: chunk sums backwards, carries from the last chunk, then each chunk from its carry.
  chunk = 0;
  for (int64_t r = hi - 1; r >= lo; --r) chunk += prob(score[r]);
  partial[t] = chunk;  // thread 0 finished reading the score sums before the barrier above
  __syncthreads();
  if (t == 0) {
    double carry = 0;
    partial[kThreads] = 0;
    for (int c = used_chunks - 1; c >= 0; --c) {  // partial[c] of an empty chunk stays 0
      carry += partial[c];
      partial[c] = carry;
    }
  }
  __syncthreads();
  double running = partial[t + 1];
  for (int64_t r = hi - 1; r >= lo; --r) {
    running += prob(score[r]);
    tail[r] = running;
  }
  for (int64_t r = lo; r < hi; ++r) count[r] = 0;
  __syncthreads();

  const bool systematic = config.variant == SamplingVariant::wta_wor;
  if (systematic) {
    // Take-all rows: the prefix of positions r < k that take_all accepts, ended by the first
    // position that fails (the smallest failing position over the block).
    long long first_failing = k;
    for (int64_t r = t; r < k; r += kThreads)
      if (!sampling::takes_all(tail, prob(score[r]), k, r)) {
        first_failing = r;
        break;
      }
    const long long found = BlockMin(temp.min).Reduce(first_failing, Smaller{});
    if (t == 0) shared_winners = found;
  } else {
    // Winner rule: the first minimum of tail[c] / (k - c) over 1 <= c < k.
    Candidate best{INFINITY, 0};
    for (int64_t c = 1 + t; c < k; c += kThreads) {
      const double ratio = sampling::winner_ratio(tail, k, c);
      if (ratio < best.ratio) best = {ratio, c};
    }
    const Candidate found = BlockReduce(temp.reduce).Reduce(best, FirstMinimum{});
    if (t == 0) shared_winners = sampling::winner_count(config.variant, tail, k, found.c, found.ratio);
  }
  __syncthreads();
  const int64_t winners = shared_winners, draws = k - winners;
  const double rest = tail[winners];  // winners <= k < K
  const double start = systematic ? sampling::draw_uniform(seed, subsequence, b, k, 0) : 0.0;

  // Draws (i.i.d. or systematic, inverse CDF over the non-winners) counted per position;
  // winners' slots.
  for (int64_t j = t; j < draws; j += kThreads) {
    const double target = systematic ? sampling::systematic_target(start, j, draws, rest)
                                     : sampling::draw_uniform(seed, subsequence, b, k, j) * rest;
    atomicAdd(&count[sampling::find_draw(tail, winners, K, target)], 1);
  }
  for (int64_t r = t; r < winners; r += kThreads) {
    slot_index[r] = rows[r];
    slot_weight[r] = 1.0f;
  }
  if (t == 0 && winners > 0) first_row = rows[0];
  __syncthreads();

  // Merge duplicates: the drawn positions in ascending order, one slot each.
  const int64_t from = lo > winners ? lo : winners;
  int distinct = 0;
  for (int64_t r = from; r < hi; ++r) distinct += count[r] > 0;
  int offset = 0, total_distinct = 0;
  BlockScan(temp.scan).ExclusiveSum(distinct, offset, total_distinct);
  int64_t slot = winners + offset;
  for (int64_t r = from; r < hi; ++r) {
    const int32_t m = count[r];
    if (m == 0) continue;
    slot_index[slot] = rows[r];
    slot_weight[slot] = sampling::draw_weight(m, rest, draws, prob(score[r]));
    if (slot == 0) first_row = rows[r];
    ++slot;
  }
  __syncthreads();
  for (int64_t pad = winners + total_distinct + t; pad < k; pad += kThreads) {
    slot_index[pad] = first_row;
    slot_weight[pad] = 0.0f;
  }
}

// Items of up to kThreads * kItems rows: one block sorts the item (descending score, stable:
// rows ascending among equal scores, like the device sorts below; padding keys are -inf and
// sort last) into shared memory and selects from there — one launch, nothing in global memory
// but the scores read and the slots written. Attention's items (65 or 197 rows) and a ViT-Small
// linear's 4,160 rows at batch 64 take this path.
template <int kItems>
__global__ void __launch_bounds__(kThreads)
    sort_select_kernel(int32_t* indices, float* weights, const float* scores, int64_t K, SamplingConfig config,
                       uint64_t seed, sampling::DrawStream stream) {
  using Sort = cub::BlockRadixSort<float, kThreads, kItems, int32_t>;
  extern __shared__ __align__(16) unsigned char smem[];  // the sort's storage, then the item's arrays
  const int64_t b = blockIdx.x;
  float keys[kItems];
  int32_t rows[kItems];
  for (int i = 0; i < kItems; ++i) {
    const int64_t r = static_cast<int64_t>(threadIdx.x) * kItems + i;  // blocked arrangement
    keys[i] = r < K ? scores[b * K + r] : -INFINITY;
    rows[i] = static_cast<int32_t>(r);
  }
  Sort(*reinterpret_cast<typename Sort::TempStorage*>(smem)).SortDescending(keys, rows);
  __syncthreads();  // the item's arrays reuse the sort's storage
  const StagedItem item(smem, K);
  for (int i = 0; i < kItems; ++i) {
    const int64_t r = static_cast<int64_t>(threadIdx.x) * kItems + i;
    if (r < K) {
      item.score[r] = keys[i];
      item.rows[r] = rows[i];
    }
  }
  __syncthreads();
  select_item(indices + b * config.k, weights + b * config.k, item.arrays(), K, config, seed, stream, b);
}

// Items sorted by a device-wide sort: one block per item, its rows copied into shared memory
// first when they fit (kStaged), else selected in place with global scratch.
template <bool kStaged>
__global__ void __launch_bounds__(kThreads)
    select_kernel(int32_t* indices, float* weights, const float* sorted_scores, const int32_t* sorted_rows,
                  double* tails, int32_t* counts, int64_t K, SamplingConfig config, uint64_t seed,
                  sampling::DrawStream stream) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int64_t b = blockIdx.x;
  ItemArrays a{sorted_scores + b * K, sorted_rows + b * K, tails + b * K, counts + b * K};
  if constexpr (kStaged) {
    const StagedItem item(smem, K);
    for (int64_t r = threadIdx.x; r < K; r += kThreads) {
      item.score[r] = a.score[r];
      item.rows[r] = a.rows[r];
    }
    a = item.arrays();
    __syncthreads();
  }
  select_item(indices + b * config.k, weights + b * config.k, a, K, config, seed, stream, b);
}

// The largest item staged in shared memory (200 KiB of the H100/H200's 227 KiB per block).
constexpr size_t kMaxStagedBytes = 200 * 1024;
constexpr int64_t kMaxStagedRows = kMaxStagedBytes / staged_bytes(1);

// Dynamic shared memory beyond the default 48 KiB must be allowed per kernel and device: done
// once, for the most any launch here asks (the attribute is a limit, not a reservation).
template <class Kernel>
void allow_shared_bytes(Kernel kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return;
  TG_INTERNAL_ASSERT(bytes <= kMaxStagedBytes, "a sampler launch asks for more shared memory than allowed");
  int device = 0;
  TG_CUDA_CHECK(cudaGetDevice(&device));
  static std::mutex mutex;
  static std::set<std::pair<const void*, int>> allowed;
  std::lock_guard lock(mutex);
  if (allowed.insert({reinterpret_cast<const void*>(kernel), device}).second)
    TG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(kMaxStagedBytes)));
}

template <int kItems>
void launch_sort_select(const Tensor& indices, const Tensor& weights, const Tensor& scores, const SamplingConfig& config,
                        uint64_t seed, sampling::DrawStream draws) {
  const int64_t batch = scores.size(0), K = scores.size(1);
  const size_t bytes = std::max(sizeof(typename cub::BlockRadixSort<float, kThreads, kItems, int32_t>::TempStorage),
                                staged_bytes(K));
  allow_shared_bytes(sort_select_kernel<kItems>, bytes);
  sort_select_kernel<kItems><<<static_cast<unsigned>(batch), kThreads, bytes, current_stream()>>>(
      indices.data<int32_t>(), weights.data<float>(), scores.data<float>(), K, config, seed, draws);
  TG_CUDA_CHECK_LAUNCH();
}

__global__ void advance_counter_kernel(int64_t* counter) { ++*counter; }

}  // namespace

void sample_rows(const Tensor& indices, const Tensor& weights, const Tensor& scores, const SamplingConfig& config,
                 uint64_t seed, sampling::DrawStream draws) {
  const Device device = scores.device();
  DeviceGuard guard(device.index);
  const cudaStream_t stream = current_stream();
  const int batch = static_cast<int>(scores.size(0)), K = static_cast<int>(scores.size(1));
  if (K <= kThreads) return launch_sort_select<1>(indices, weights, scores, config, seed, draws);
  if (K <= kThreads * 4) return launch_sort_select<4>(indices, weights, scores, config, seed, draws);
  if (K <= kThreads * 17) return launch_sort_select<17>(indices, weights, scores, config, seed, draws);

  const int n = batch * K;  // sample_rows checked that it fits
  const Tensor sorted_rows = empty({n}, DType::i32, device), sorted_scores = empty({n}, DType::f32, device);
  const Tensor rows = empty({n}, DType::i32, device);
  row_iota_kernel<<<grid_for(n), kBlockSize, 0, stream>>>(rows.data<int32_t>(), K, n);
  TG_CUDA_CHECK_LAUNCH();
  if (batch == 1) {
    // One long item (a linear's N rows): the device-wide radix sort spreads each pass over the
    // whole GPU, where the segmented sort would give the single segment one block.
    size_t temp_bytes = 0;
    TG_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, temp_bytes, scores.data<float>(),
                                                            sorted_scores.data<float>(), rows.data<int32_t>(),
                                                            sorted_rows.data<int32_t>(), n, 0, 32, stream));
    const Tensor temp = empty({static_cast<int64_t>(temp_bytes)}, DType::u8, device);
    TG_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(temp.raw_data(), temp_bytes, scores.data<float>(),
                                                            sorted_scores.data<float>(), rows.data<int32_t>(),
                                                            sorted_rows.data<int32_t>(), n, 0, 32, stream));
  } else {
    // Stable descending sort of every item's scores (CUB maps -0.0 to +0.0, like the CPU's
    // comparison), carrying the row indices along.
    const auto starts = thrust::make_transform_iterator(thrust::make_counting_iterator(0), SegmentStart{K});
    size_t temp_bytes = 0;
    TG_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        nullptr, temp_bytes, scores.data<float>(), sorted_scores.data<float>(), rows.data<int32_t>(),
        sorted_rows.data<int32_t>(), n, batch, starts, starts + 1, 0, 32, stream));
    const Tensor temp = empty({static_cast<int64_t>(temp_bytes)}, DType::u8, device);
    TG_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        temp.raw_data(), temp_bytes, scores.data<float>(), sorted_scores.data<float>(), rows.data<int32_t>(),
        sorted_rows.data<int32_t>(), n, batch, starts, starts + 1, 0, 32, stream));
  }

  if (K <= kMaxStagedRows) {
    const size_t bytes = staged_bytes(K);
    allow_shared_bytes(select_kernel<true>, bytes);
    select_kernel<true><<<batch, kThreads, bytes, stream>>>(indices.data<int32_t>(), weights.data<float>(),
                                                            sorted_scores.data<float>(), sorted_rows.data<int32_t>(),
                                                            nullptr, nullptr, K, config, seed, draws);
  } else {
    const Tensor tails = empty({n}, DType::f64, device), counts = empty({n}, DType::i32, device);
    select_kernel<false><<<batch, kThreads, 0, stream>>>(indices.data<int32_t>(), weights.data<float>(),
                                                         sorted_scores.data<float>(), sorted_rows.data<int32_t>(),
                                                         tails.data<double>(), counts.data<int32_t>(), K, config, seed,
                                                         draws);
  }
  TG_CUDA_CHECK_LAUNCH();
}

void advance_counter(const Tensor& counter) {
  DeviceGuard guard(counter.device().index);
  advance_counter_kernel<<<1, 1, 0, current_stream()>>>(static_cast<int64_t*>(counter.raw_data()));
  TG_CUDA_CHECK_LAUNCH();
}

}  // namespace tg::cuda
