// CUDA kernels of the sampling family: the row sampler (WTA-CRS, CRS, top-k, WTA-WOR). A sort orders every item's rows
// by descending score, then one block per item computes the probabilities, the tail sums and
// the winner rule, draws by inverse CDF, merges duplicates and writes the slots. Items of up to
// 13,312 rows (a ViT-B/16 linear's 64 x 197 rows) do all of it in one launch: a block radix sort
// (256 threads for short items, 1,024 for long ones) into shared memory, then the selection from
// there. Longer items are sorted by CUB's device-wide (one item) or segmented (several) radix
// sort and staged into shared memory for the selection when they fit (global scratch beyond).
// The sorted row numbers live in global scratch: the selection reads them only for the k slots
// it writes, so shared memory holds 16 bytes per row (tail sum, score, draw count). No host
// synchronisation: sizes are known on the host, decisions are made on the device. The
// double-precision sums follow the chunked order of ops/matmul/sampling_kernels.h (thread t <
// kSampleChunks owns chunk t), which ops/cpu/sampling.cpp mirrors; the other passes spread over
// all the block's threads.
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <map>
#include <mutex>
#include <utility>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "ops/matmul/sampling_kernels.h"

namespace tg::cuda {

namespace {

using sampling::chunk_begin;
constexpr int kChunks = sampling::kSampleChunks;  // thread t < kChunks sums chunk t
constexpr int kWideThreads = 1024;                // the block of the long items' one-launch path

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
// else in global memory. The row numbers stay in global memory: they are read only for the
// slots written.
struct ItemArrays {
  const float* score;
  const int32_t* rows;
  double* tail;    // tail[r] = Σ_{r' >= r} p_(r')
  int32_t* count;  // how often position r was drawn
};

// An item staged in shared memory: tail (f64) first for alignment, then score and count.
__host__ __device__ constexpr size_t staged_bytes(int64_t K) {
  return static_cast<size_t>(K) * (sizeof(double) + sizeof(float) + sizeof(int32_t));
}
struct StagedItem {
  double* tail;
  float* score;
  int32_t* count;
  __device__ StagedItem(unsigned char* smem, int64_t K)
      : tail(reinterpret_cast<double*>(smem)), score(reinterpret_cast<float*>(tail + K)),
        count(reinterpret_cast<int32_t*>(score + K)) {}
  __device__ ItemArrays arrays(const int32_t* rows) const { return {score, rows, tail, count}; }
};

// Chunk sums combined in chunk order by one thread (the order the CPU mirrors). Chunks past
// `used` are empty and would add zeros, which leave a sum of non-negative terms unchanged.
__device__ double ordered_sum(const double* partial, int used) {
  double total = 0;
#pragma unroll 8
  for (int c = 0; c < used; ++c) total += partial[c];
  return total;
}

// The selection of item b (one block of kBlockThreads >= kSampleChunks threads): probabilities,
// tail sums, the winner rule, the draws by inverse CDF, merging duplicates and writing the k
// slots. The sums run over the kSampleChunks chunks of the CPU's order (threads t < kChunks);
// everything else is spread over all threads.
template <int kBlockThreads>
__device__ void select_item(int32_t* slot_index, float* slot_weight, const ItemArrays& a, int64_t K,
                            const SamplingConfig& config, uint64_t seed, sampling::DrawStream stream, int64_t b) {
  static_assert(kBlockThreads >= kChunks && kBlockThreads % kChunks == 0);
  const uint64_t subsequence = stream.subsequence();
  using BlockReduce = cub::BlockReduce<Candidate, kBlockThreads>;
  using BlockMin = cub::BlockReduce<long long, kBlockThreads>;
  using BlockScan = cub::BlockScan<int, kBlockThreads>;
  __shared__ union {
    typename BlockReduce::TempStorage reduce;
    typename BlockMin::TempStorage min;
    typename BlockScan::TempStorage scan;
  } temp;
  __shared__ double partial[kChunks + 1];  // chunk sums, then carries into each chunk
  __shared__ double total_score;
  __shared__ int64_t shared_winners;
  __shared__ int32_t first_row;

  const int64_t k = config.k, t = threadIdx.x;
  const float* score = a.score;
  const int32_t* rows = a.rows;
  double* tail = a.tail;
  int32_t* count = a.count;
  const bool sums = t < kChunks;  // this thread owns chunk t of the ordered sums
  const int64_t lo = sums ? chunk_begin(K, t) : K, hi = sums ? chunk_begin(K, t + 1) : K;
  const int64_t chunk_length = (K + kChunks - 1) / kChunks;
  const int used_chunks = static_cast<int>((K + chunk_length - 1) / chunk_length);

  // Σ s: each chunk forwards, then the chunk sums in order.
  double chunk = 0;
  for (int64_t r = lo; r < hi; ++r) chunk += static_cast<double>(score[r]);
  if (sums) partial[t] = chunk;
  __syncthreads();
  if (t == 0) total_score = ordered_sum(partial, used_chunks);
  __syncthreads();
  const sampling::Probability prob{1.0 - config.alpha, config.alpha / static_cast<double>(K),
                                   1.0 / static_cast<double>(K), total_score};

  // Tail sums: chunk sums backwards, carries from the last chunk, then each chunk from its carry.
  chunk = 0;
  for (int64_t r = hi - 1; r >= lo; --r) chunk += prob(score[r]);
  if (sums) partial[t] = chunk;  // thread 0 finished reading the score sums before the barrier above
  __syncthreads();
  if (t == 0) {
    double carry = 0;
    partial[kChunks] = 0;
    for (int c = used_chunks - 1; c >= 0; --c) {  // partial[c] of an empty chunk stays 0
      carry += partial[c];
      partial[c] = carry;
    }
  }
  __syncthreads();
  if (sums) {
    double running = partial[t + 1];
    for (int64_t r = hi - 1; r >= lo; --r) {
      running += prob(score[r]);
      tail[r] = running;
    }
  }
  for (int64_t r = t; r < K; r += kBlockThreads) count[r] = 0;
  __syncthreads();

  const bool systematic = config.variant == SamplingVariant::wta_wor;
  if (systematic) {
    // Take-all rows: the prefix of positions r < k that take_all accepts, ended by the first
    // position that fails (the smallest failing position over the block).
    long long first_failing = k;
    for (int64_t r = t; r < k; r += kBlockThreads)
      if (!sampling::takes_all(tail, prob(score[r]), k, r)) {
        first_failing = r;
        break;
      }
    const long long found = BlockMin(temp.min).Reduce(first_failing, Smaller{});
    if (t == 0) shared_winners = found;
  } else {
    // Winner rule: the first minimum of tail[c] / (k - c) over 1 <= c < k.
    Candidate best{INFINITY, 0};
    for (int64_t c = 1 + t; c < k; c += kBlockThreads) {
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
  for (int64_t j = t; j < draws; j += kBlockThreads) {
    const double target = systematic ? sampling::systematic_target(start, j, draws, rest)
                                     : sampling::draw_uniform(seed, subsequence, b, k, j) * rest;
    atomicAdd(&count[sampling::find_draw(tail, winners, K, target)], 1);
  }
  for (int64_t r = t; r < winners; r += kBlockThreads) {
    slot_index[r] = rows[r];
    slot_weight[r] = 1.0f;
  }
  if (t == 0 && winners > 0) first_row = rows[0];
  __syncthreads();

  // Merge duplicates: the drawn positions in ascending order, one slot each (each thread takes
  // a contiguous share of the positions past the winners).
  const int64_t drawn = K - winners;
  const int64_t from = winners + sampling::part_begin(drawn, kBlockThreads, t);
  const int64_t to = winners + sampling::part_begin(drawn, kBlockThreads, t + 1);
  int distinct = 0;
  for (int64_t r = from; r < to; ++r) distinct += count[r] > 0;
  int offset = 0, total_distinct = 0;
  BlockScan(temp.scan).ExclusiveSum(distinct, offset, total_distinct);
  int64_t slot = winners + offset;
  for (int64_t r = from; r < to; ++r) {
    const int32_t m = count[r];
    if (m == 0) continue;
    slot_index[slot] = rows[r];
    slot_weight[slot] = sampling::draw_weight(m, rest, draws, prob(score[r]));
    if (slot == 0) first_row = rows[r];
    ++slot;
  }
  __syncthreads();
  for (int64_t pad = winners + total_distinct + t; pad < k; pad += kBlockThreads) {
    slot_index[pad] = first_row;
    slot_weight[pad] = 0.0f;
  }
}

// Items of up to kBlockThreads * kItems rows: one block sorts the item (descending score,
// stable: rows ascending among equal scores, like the device sorts below; padding keys are -inf
// and sort last), keeps the sorted scores in shared memory and the sorted rows in
// `sorted_rows`, and selects — one launch. Attention's items (65 or 197 rows) take 256 threads;
// the linears' items (4,160 rows for ViT-S/4 at batch 64, 8,320 at 128, 12,608 for ViT-B/16 at
// 64) take 1,024.
template <int kBlockThreads, int kItems>
__global__ void __launch_bounds__(kBlockThreads)
    sort_select_kernel(int32_t* indices, float* weights, int32_t* sorted_rows, const float* scores, int64_t K,
                       SamplingConfig config, uint64_t seed, sampling::DrawStream stream) {
  using Sort = cub::BlockRadixSort<float, kBlockThreads, kItems, int32_t>;
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
  int32_t* item_rows = sorted_rows + b * K;
  for (int i = 0; i < kItems; ++i) {
    const int64_t r = static_cast<int64_t>(threadIdx.x) * kItems + i;
    if (r < K) {
      item.score[r] = keys[i];
      item_rows[r] = rows[i];
    }
  }
  __syncthreads();  // also orders the rows' global writes before the selection reads them
  select_item<kBlockThreads>(indices + b * config.k, weights + b * config.k, item.arrays(item_rows), K, config, seed,
                             stream, b);
}

// Items sorted by a device-wide sort: one block per item, its scores copied into shared memory
// with room for the scratch when they fit (kStaged), else selected in place with global scratch.
template <bool kStaged>
__global__ void __launch_bounds__(kChunks)
    select_kernel(int32_t* indices, float* weights, const float* sorted_scores, const int32_t* sorted_rows,
                  double* tails, int32_t* counts, int64_t K, SamplingConfig config, uint64_t seed,
                  sampling::DrawStream stream) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int64_t b = blockIdx.x;
  ItemArrays a{sorted_scores + b * K, sorted_rows + b * K, tails + b * K, counts + b * K};
  if constexpr (kStaged) {
    const StagedItem item(smem, K);
    for (int64_t r = threadIdx.x; r < K; r += kChunks) item.score[r] = a.score[r];
    a = item.arrays(a.rows);
    __syncthreads();
  }
  select_item<kChunks>(indices + b * config.k, weights + b * config.k, a, K, config, seed, stream, b);
}

// The dynamic shared memory `kernel` may use on the current device: the device's opt-in limit per
// block less the kernel's static shared memory. The first query per kernel and device also
// raises the kernel's limit to it (beyond the default 48 KiB it must be allowed explicitly; the
// attribute is a limit, not a reservation).
template <class Kernel>
size_t dynamic_shared_limit(Kernel kernel) {
  int device = 0;
  TG_CUDA_CHECK(cudaGetDevice(&device));
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, size_t> limits;
  std::lock_guard lock(mutex);
  const auto key = std::make_pair(reinterpret_cast<const void*>(kernel), device);
  if (const auto found = limits.find(key); found != limits.end()) return found->second;
  int optin = 0;
  TG_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  cudaFuncAttributes attributes{};
  TG_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
  const size_t limit = static_cast<size_t>(optin) - attributes.sharedSizeBytes;
  TG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(limit)));
  limits.emplace(key, limit);
  return limit;
}

// One launch for items of up to kBlockThreads * kItems rows; false (nothing launched) when the
// item's staged arrays do not fit the device's shared memory.
template <int kBlockThreads, int kItems>
bool try_sort_select(const Tensor& indices, const Tensor& weights, const Tensor& scores, const SamplingConfig& config,
                     uint64_t seed, sampling::DrawStream draws) {
  const int64_t batch = scores.size(0), K = scores.size(1);
  TG_INTERNAL_ASSERT(K <= int64_t{kBlockThreads} * kItems, "sampler item longer than the block sort holds");
  const auto kernel = sort_select_kernel<kBlockThreads, kItems>;
  const size_t bytes =
      std::max(sizeof(typename cub::BlockRadixSort<float, kBlockThreads, kItems, int32_t>::TempStorage), staged_bytes(K));
  if (bytes > dynamic_shared_limit(kernel)) return false;
  const Tensor sorted_rows = empty({batch * K}, DType::i32, scores.device());
  kernel<<<static_cast<unsigned>(batch), kBlockThreads, bytes, current_stream()>>>(
      indices.data<int32_t>(), weights.data<float>(), sorted_rows.data<int32_t>(), scores.data<float>(), K, config, seed,
      draws);
  TG_CUDA_CHECK_LAUNCH();
  return true;
}

__global__ void advance_counter_kernel(int64_t* counter) { ++*counter; }

}  // namespace

void sample_rows(const Tensor& indices, const Tensor& weights, const Tensor& scores, const SamplingConfig& config,
                 uint64_t seed, sampling::DrawStream draws) {
  const Device device = scores.device();
  DeviceGuard guard(device.index);
  const cudaStream_t stream = current_stream();
  const int batch = static_cast<int>(scores.size(0)), K = static_cast<int>(scores.size(1));
  // One launch when a block sort holds the item and its arrays fit in shared memory.
  if (K <= kChunks) return (void)try_sort_select<kChunks, 1>(indices, weights, scores, config, seed, draws);
  if (K <= kChunks * 4) return (void)try_sort_select<kChunks, 4>(indices, weights, scores, config, seed, draws);
  // Items per thread in steps that keep the sort's padding small for the ViT linears' items
  // (4,160, 8,320 and 12,608 rows pad by 19%, 10% and 5%).
  const bool one_launch = K <= kWideThreads * 5 ? try_sort_select<kWideThreads, 5>(indices, weights, scores, config, seed, draws)
                          : K <= kWideThreads * 9
                              ? try_sort_select<kWideThreads, 9>(indices, weights, scores, config, seed, draws)
                              : K <= kWideThreads * 13 &&
                                    try_sort_select<kWideThreads, 13>(indices, weights, scores, config, seed, draws);
  if (one_launch) return;

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

  const size_t staged = staged_bytes(K);
  if (staged <= dynamic_shared_limit(select_kernel<true>)) {
    select_kernel<true><<<batch, kChunks, staged, stream>>>(indices.data<int32_t>(), weights.data<float>(),
                                                            sorted_scores.data<float>(), sorted_rows.data<int32_t>(),
                                                            nullptr, nullptr, K, config, seed, draws);
  } else {
    const Tensor tails = empty({n}, DType::f64, device), counts = empty({n}, DType::i32, device);
    select_kernel<false><<<batch, kChunks, 0, stream>>>(indices.data<int32_t>(), weights.data<float>(),
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
