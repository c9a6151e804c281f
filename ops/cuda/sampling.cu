// CUDA kernels of the sampling family: the WTA-CRS row sampler. A sort orders every item's rows
// by descending score (items of up to kBlockSortRows rows: one block each with a block radix
// sort, a single launch; a single long item: CUB's device-wide radix sort; many long items:
// CUB's segmented radix sort); then one block per item computes the
// probabilities, the tail sums and the winner rule, draws by inverse CDF, merges duplicates and
// writes the slots. No host synchronisation: sizes are known on the host, decisions are made on
// the device. The double-precision sums follow the chunked order of ops/matmul/
// sampling_kernels.h (thread t owns chunk t), which ops/cpu/sampling.cpp mirrors.
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

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

// Items this short are sorted inside one block: attention's per-(batch, head) items are 65 or
// 197 rows, where the segmented sort's passes of tiny launches would dominate the sampler.
constexpr int kBlockSortThreads = 256, kBlockSortItems = 8;
constexpr int64_t kBlockSortRows = kBlockSortThreads * kBlockSortItems;

// The same order as the segmented sort below: descending score, stable (rows ascending among
// equal scores). Padding keys are -inf and sort last.
__global__ void __launch_bounds__(kBlockSortThreads)
    block_sort_kernel(float* sorted_scores, int32_t* sorted_rows, const float* scores, int64_t K) {
  using Sort = cub::BlockRadixSort<float, kBlockSortThreads, kBlockSortItems, int32_t>;
  __shared__ typename Sort::TempStorage temp;
  const int64_t item = blockIdx.x;
  float keys[kBlockSortItems];
  int32_t rows[kBlockSortItems];
  for (int i = 0; i < kBlockSortItems; ++i) {
    const int64_t r = static_cast<int64_t>(threadIdx.x) * kBlockSortItems + i;  // blocked arrangement
    keys[i] = r < K ? scores[item * K + r] : -INFINITY;
    rows[i] = static_cast<int32_t>(r);
  }
  Sort(temp).SortDescending(keys, rows);
  for (int i = 0; i < kBlockSortItems; ++i) {
    const int64_t r = static_cast<int64_t>(threadIdx.x) * kBlockSortItems + i;
    if (r < K) {
      sorted_scores[item * K + r] = keys[i];
      sorted_rows[item * K + r] = rows[i];
    }
  }
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

// One block per item. scores/rows: the item's rows sorted by descending score; tails and
// counts: [batch, K] scratch (tail sums; how often each position was drawn).
__global__ void __launch_bounds__(kThreads)
    select_kernel(int32_t* indices, float* weights, const float* sorted_scores, const int32_t* sorted_rows,
                  double* tails, int32_t* counts, int64_t K, SamplingConfig config, uint64_t seed,
                  uint64_t subsequence) {
  using BlockReduce = cub::BlockReduce<Candidate, kThreads>;
  using BlockScan = cub::BlockScan<int, kThreads>;
  __shared__ union {
    typename BlockReduce::TempStorage reduce;
    typename BlockScan::TempStorage scan;
  } temp;
  __shared__ double partial[kThreads + 1];  // chunk sums, then carries into each chunk
  __shared__ double total_score;
  __shared__ int64_t shared_winners;
  __shared__ int32_t first_row;

  const int64_t b = blockIdx.x, k = config.k, t = threadIdx.x;
  const float* score = sorted_scores + b * K;
  const int32_t* rows = sorted_rows + b * K;
  double* tail = tails + b * K;
  int32_t* count = counts + b * K;
  int32_t* slot_index = indices + b * k;
  float* slot_weight = weights + b * k;
  const int64_t lo = chunk_begin(K, t), hi = chunk_begin(K, t + 1);

  // Σ s: each chunk forwards, then the chunk sums in order.
  double chunk = 0;
  for (int64_t r = lo; r < hi; ++r) chunk += static_cast<double>(score[r]);
  partial[t] = chunk;
  __syncthreads();
  if (t == 0) {
    double total = 0;
    for (int c = 0; c < kThreads; ++c) total += partial[c];
    total_score = total;
  }
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
    for (int c = kThreads - 1; c >= 0; --c) {
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

  // Winner rule: the first minimum of tail[c] / (k - c) over 1 <= c < k.
  Candidate best{INFINITY, 0};
  for (int64_t c = 1 + t; c < k; c += kThreads) {
    const double ratio = sampling::winner_ratio(tail, k, c);
    if (ratio < best.ratio) best = {ratio, c};
  }
  const Candidate found = BlockReduce(temp.reduce).Reduce(best, FirstMinimum{});
  if (t == 0) shared_winners = sampling::winner_count(config.variant, tail, k, found.c, found.ratio);
  __syncthreads();
  const int64_t winners = shared_winners, draws = k - winners;
  const double rest = tail[winners];  // winners <= k < K

  // Draws (i.i.d., inverse CDF over the non-winners) counted per position; winners' slots.
  for (int64_t j = t; j < draws; j += kThreads) {
    const double target = sampling::draw_uniform(seed, subsequence, b, k, j) * rest;
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

}  // namespace

void sample_rows(const Tensor& indices, const Tensor& weights, const Tensor& scores, const SamplingConfig& config,
                 uint64_t seed, uint64_t subsequence) {
  const Device device = scores.device();
  DeviceGuard guard(device.index);
  const cudaStream_t stream = current_stream();
  const int batch = static_cast<int>(scores.size(0)), K = static_cast<int>(scores.size(1));
  const int n = batch * K;  // sample_rows checked that it fits
  const Tensor sorted_rows = empty({n}, DType::i32, device), sorted_scores = empty({n}, DType::f32, device);
  const Tensor tails = empty({n}, DType::f64, device), counts = empty({n}, DType::i32, device);

  if (K <= kBlockSortRows) {
    block_sort_kernel<<<batch, kBlockSortThreads, 0, stream>>>(sorted_scores.data<float>(), sorted_rows.data<int32_t>(),
                                                               scores.data<float>(), K);
    TG_CUDA_CHECK_LAUNCH();
  } else if (batch == 1) {
    // One long item (a linear's N rows): the device-wide radix sort spreads each pass over the
    // whole GPU, where the segmented sort would give the single segment one block.
    const Tensor rows = empty({n}, DType::i32, device);
    row_iota_kernel<<<grid_for(n), kBlockSize, 0, stream>>>(rows.data<int32_t>(), K, n);
    TG_CUDA_CHECK_LAUNCH();
    size_t temp_bytes = 0;
    TG_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, temp_bytes, scores.data<float>(),
                                                            sorted_scores.data<float>(), rows.data<int32_t>(),
                                                            sorted_rows.data<int32_t>(), n, 0, 32, stream));
    const Tensor temp = empty({static_cast<int64_t>(temp_bytes)}, DType::u8, device);
    TG_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(temp.raw_data(), temp_bytes, scores.data<float>(),
                                                            sorted_scores.data<float>(), rows.data<int32_t>(),
                                                            sorted_rows.data<int32_t>(), n, 0, 32, stream));
  } else {
    const Tensor rows = empty({n}, DType::i32, device);
    row_iota_kernel<<<grid_for(n), kBlockSize, 0, stream>>>(rows.data<int32_t>(), K, n);
    TG_CUDA_CHECK_LAUNCH();
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

  select_kernel<<<batch, kThreads, 0, stream>>>(indices.data<int32_t>(), weights.data<float>(),
                                                sorted_scores.data<float>(), sorted_rows.data<int32_t>(),
                                                tails.data<double>(), counts.data<int32_t>(), K, config, seed,
                                                subsequence);
  TG_CUDA_CHECK_LAUNCH();
}

}  // namespace tg::cuda
