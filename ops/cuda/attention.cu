// CUDA kernels of fused attention (flash attention's scheme): tiles of 64 queries × 64 keys in
// shared memory, an online softmax in forward, and a backward that recomputes the probabilities
// from the saved row log-sum-exp. Backward runs two kernels so that every output is written by
// one block, without atomics (bit-reproducible): one per key tile for dK and dV, one per query
// tile for dQ. The tile products run on tensor cores for bf16 (WMMA 16×16×16, f32 accumulators)
// and for f32 when the precision policy allows TF32 (WMMA 16×16×8 on operands rounded to TF32,
// f32 accumulators), and on CUDA cores for f32 otherwise (fp32 attention stays fp32-accurate).
// Head dims 32 and 64.
// The entry points hand bf16 to cuDNN first (attention_cudnn.cpp) and run these kernels when it
// declines.
#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "core/cuda/launch.h"
#include "ops/attention_kernels.h"
#include "ops/cuda/attention_cudnn.h"

namespace tg::cuda {

namespace {

constexpr int kTile = 64;      // query rows and key rows per tile
constexpr int kThreads = 256;  // 8 warps
constexpr int kWarps = kThreads / 32;

__device__ inline float to_f32(float x) { return x; }
__device__ inline float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class E>
__device__ inline E from_f32(float x) {
  if constexpr (std::is_same_v<E, float>) return x;
  else return __float2bfloat16(x);
}

// The left operand of an accumulating tile product: P itself or its transpose.
enum class Left { as_is, transposed };

// Tile products on CUDA cores (f32). 256 threads: thread t owns the output rows t/16 + 16i
// (i < 4) and the columns t%16 + 16j, so a warp reads 2 rows of the left operand (broadcast)
// and 16 consecutive columns or rows of the right one (odd row strides: no bank conflicts).
struct SimtMma {
  using Elem = float;
  static constexpr int kPadElem = 1, kPadAcc = 1;
  static constexpr int kRows = kTile / (kThreads / 16);  // output rows per thread

  // S[64×N] = A[64×K]·B[N×K]ᵀ
  template <int N, int K>
  static __device__ void abt(float* S, int lds, const float* A, int lda, const float* B, int ldb) {
    const int r0 = threadIdx.x / 16, c0 = threadIdx.x % 16;
    float acc[kRows][N / 16] = {};
    for (int k = 0; k < K; ++k) {
      float a[kRows];
      for (int i = 0; i < kRows; ++i) a[i] = A[(r0 + 16 * i) * lda + k];
      for (int j = 0; j < N / 16; ++j) {
        const float b = B[(c0 + 16 * j) * ldb + k];
        for (int i = 0; i < kRows; ++i) acc[i][j] += a[i] * b;
      }
    }
    for (int i = 0; i < kRows; ++i)
      for (int j = 0; j < N / 16; ++j) S[(r0 + 16 * i) * lds + c0 + 16 * j] = acc[i][j];
  }

  // C[64×N] += op(P)·X[K×N]: op(P) = P [64×K] (Left::as_is) or Pᵀ of P [K×64] (Left::transposed).
  template <Left kLeft, int N, int K>
  static __device__ void accumulate(float* C, int ldc, const float* P, int ldp, const float* X, int ldx) {
    const int r0 = threadIdx.x / 16, c0 = threadIdx.x % 16;
    float acc[kRows][N / 16] = {};
    for (int k = 0; k < K; ++k) {
      float a[kRows];
      for (int i = 0; i < kRows; ++i)
        a[i] = kLeft == Left::as_is ? P[(r0 + 16 * i) * ldp + k] : P[k * ldp + r0 + 16 * i];
      for (int j = 0; j < N / 16; ++j) {
        const float x = X[k * ldx + c0 + 16 * j];
        for (int i = 0; i < kRows; ++i) acc[i][j] += a[i] * x;
      }
    }
    for (int i = 0; i < kRows; ++i)
      for (int j = 0; j < N / 16; ++j) C[(r0 + 16 * i) * ldc + c0 + 16 * j] += acc[i][j];
  }
};

// Tile products on tensor cores through WMMA with f32 accumulators: bf16 operands (16×16×16
// fragments) or f32 operands rounded to TF32 as they are loaded (16×16×8). Warp w owns output rows
// 16(w % 4)..16(w % 4)+15 and every other 16-column fragment from w / 4. Row strides are padded
// by 8 bf16 / 4 f32 (multiples of WMMA's 16 bytes that shift rows across banks); every fragment
// pointer stays 32-byte aligned.
template <class E>
struct WmmaMma {
  using Elem = E;
  static constexpr bool kTf32 = std::is_same_v<E, float>;
  static constexpr int kK = kTf32 ? 8 : 16;  // the fragments' inner dim
  static constexpr int kPadElem = kTf32 ? 4 : 8, kPadAcc = 4;
  using Input = std::conditional_t<kTf32, nvcuda::wmma::precision::tf32, __nv_bfloat16>;
  template <class Use, class Layout>
  using Fragment = nvcuda::wmma::fragment<Use, 16, 16, kK, Input, Layout>;
  using Accumulator = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, kK, float>;

  // TF32 fragments take f32 values rounded to TF32 (the mma's inputs are otherwise undefined).
  template <class Fragment>
  static __device__ void round_inputs(Fragment& f) {
    if constexpr (kTf32)
      for (int i = 0; i < f.num_elements; ++i) f.x[i] = nvcuda::wmma::__float_to_tf32(f.x[i]);
  }

  template <int N, int K>
  static __device__ void abt(float* S, int lds, const Elem* A, int lda, const Elem* B, int ldb) {
    using namespace nvcuda::wmma;
    const int w = threadIdx.x / 32 % 4;  // the row strip; the column fragments interleave
    for (int n = threadIdx.x / 128; n < N / 16; n += kWarps / 4) {
      Accumulator acc;
      fill_fragment(acc, 0.0f);
      for (int k = 0; k < K / kK; ++k) {
        Fragment<matrix_a, row_major> a;
        Fragment<matrix_b, col_major> b;  // Bᵀ: element (k, n) at B[n][k]
        load_matrix_sync(a, A + 16 * w * lda + kK * k, lda);
        load_matrix_sync(b, B + 16 * n * ldb + kK * k, ldb);
        round_inputs(a);
        round_inputs(b);
        mma_sync(acc, a, b, acc);
      }
      store_matrix_sync(S + 16 * w * lds + 16 * n, acc, lds, mem_row_major);
    }
  }

  template <Left kLeft, int N, int K>
  static __device__ void accumulate(float* C, int ldc, const Elem* P, int ldp, const Elem* X, int ldx) {
    using namespace nvcuda::wmma;
    // Pᵀ as the left operand: element (m, k) at P[k][m], a column-major fragment.
    using LeftLayout = std::conditional_t<kLeft == Left::as_is, row_major, col_major>;
    const int w = threadIdx.x / 32 % 4;  // the row strip; the column fragments interleave
    for (int n = threadIdx.x / 128; n < N / 16; n += kWarps / 4) {
      Accumulator acc;
      load_matrix_sync(acc, C + 16 * w * ldc + 16 * n, ldc, mem_row_major);
      for (int k = 0; k < K / kK; ++k) {
        Fragment<matrix_a, LeftLayout> a;
        Fragment<matrix_b, row_major> b;
        load_matrix_sync(a, kLeft == Left::as_is ? P + 16 * w * ldp + kK * k : P + kK * k * ldp + 16 * w, ldp);
        load_matrix_sync(b, X + kK * k * ldx + 16 * n, ldx);
        round_inputs(a);
        round_inputs(b);
        mma_sync(acc, a, b, acc);
      }
      store_matrix_sync(C + 16 * w * ldc + 16 * n, acc, ldc, mem_row_major);
    }
  }
};

constexpr size_t align_up(size_t bytes) { return (bytes + 127) / 128 * 128; }

// Row strides (elements) and byte sizes of the shared-memory tiles.
template <class Mma, int D>
struct Tiles {
  using Elem = typename Mma::Elem;
  static constexpr int ld_elem = D + Mma::kPadElem;      // [64, D] operand tiles: Q, K, V, dO
  static constexpr int ld_prob = kTile + Mma::kPadElem;  // [64, 64] operand tiles: P, dS
  static constexpr int ld_score = kTile + Mma::kPadAcc;  // [64, 64] f32: S, dP
  static constexpr int ld_acc = D + Mma::kPadAcc;        // [64, D] f32 accumulators: O, dQ, dK, dV
  static constexpr size_t elem_bytes = align_up(kTile * ld_elem * sizeof(Elem));
  static constexpr size_t prob_bytes = align_up(kTile * ld_prob * sizeof(Elem));
  static constexpr size_t score_bytes = align_up(kTile * ld_score * sizeof(float));
  static constexpr size_t acc_bytes = align_up(kTile * ld_acc * sizeof(float));
  static constexpr size_t row_bytes = align_up(kTile * sizeof(float));
};

// Carves typed tiles out of the dynamic shared memory, in order.
struct SharedCursor {
  unsigned char* next;
  template <class T>
  __device__ T* take(size_t bytes) {
    T* p = reinterpret_cast<T*>(next);
    next += bytes;
    return p;
  }
};

// One [B, H, T, D] operand: element (b, h, t, d) at data[b·sb + h·sh + t·st + d]. `vector`:
// every row starts on 16 bytes, so rows move in 16-byte pieces.
template <class E>
struct HeadsArg {
  E* data;
  int64_t sb, sh, st;
  bool vector;
  __device__ E* row(int b, int h, int t) const { return data + b * sb + h * sh + static_cast<int64_t>(t) * st; }
};

template <class E>
HeadsArg<E> heads_arg(const Tensor& x) {
  const auto bytes = [&](int64_t elements) { return elements * static_cast<int64_t>(sizeof(E)); };
  const bool vector = reinterpret_cast<uintptr_t>(x.raw_data()) % 16 == 0 && bytes(x.stride(0)) % 16 == 0 &&
                      bytes(x.stride(1)) % 16 == 0 && bytes(x.stride(2)) % 16 == 0 && bytes(x.size(3)) % 16 == 0;
  return {static_cast<E*>(x.raw_data()), x.stride(0), x.stride(1), x.stride(2), vector};
}

// 16 bytes of elements.
template <class E>
struct alignas(16) Piece {
  static constexpr int kSize = 16 / sizeof(E);
  E e[kSize];
};

// dst[r, d] = rows r < valid of the operand from token t0, zero below (padding rows).
template <int D, int ld, class E>
__device__ void load_tile(E* dst, const HeadsArg<const E>& src, int b, int h, int t0, int valid) {
  if (src.vector) {
    constexpr int kPieces = D / Piece<E>::kSize;  // per row
    for (int i = threadIdx.x; i < kTile * kPieces; i += kThreads) {
      const int r = i / kPieces, d = i % kPieces * Piece<E>::kSize;
      Piece<E> piece;
      if (r < valid) piece = *reinterpret_cast<const Piece<E>*>(src.row(b, h, t0 + r) + d);
      else
        for (E& e : piece.e) e = from_f32<E>(0.0f);
      for (int j = 0; j < Piece<E>::kSize; ++j) dst[r * ld + d + j] = piece.e[j];
    }
    return;
  }
  for (int i = threadIdx.x; i < kTile * D; i += kThreads) {
    const int r = i / D, d = i % D;
    dst[r * ld + d] = r < valid ? src.row(b, h, t0 + r)[d] : from_f32<E>(0.0f);
  }
}

template <int ld>
__device__ void zero_acc(float* acc, int cols) {
  for (int i = threadIdx.x; i < kTile * cols; i += kThreads) acc[(i / cols) * ld + i % cols] = 0.0f;
}

// out[r] = acc[r] · row_scale[r] (row_scale null: 1) for rows r < valid.
template <int D, int ld, class E>
__device__ void store_tile(const HeadsArg<E>& dst, int b, int h, int t0, int valid, const float* acc,
                           const float* row_scale) {
  if (dst.vector) {
    constexpr int kPieces = D / Piece<E>::kSize;
    for (int i = threadIdx.x; i < kTile * kPieces; i += kThreads) {
      const int r = i / kPieces, d = i % kPieces * Piece<E>::kSize;
      if (r >= valid) continue;
      const float scale = row_scale ? row_scale[r] : 1.0f;
      Piece<E> piece;
      for (int j = 0; j < Piece<E>::kSize; ++j) piece.e[j] = from_f32<E>(acc[r * ld + d + j] * scale);
      *reinterpret_cast<Piece<E>*>(dst.row(b, h, t0 + r) + d) = piece;
    }
    return;
  }
  for (int i = threadIdx.x; i < kTile * D; i += kThreads) {
    const int r = i / D, d = i % D;
    if (r < valid) dst.row(b, h, t0 + r)[d] = from_f32<E>(acc[r * ld + d] * (row_scale ? row_scale[r] : 1.0f));
  }
}

struct Geometry {
  int heads, tq, tk;
  float scale;
};

template <class Mma, int D>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(HeadsArg<typename Mma::Elem> out, float* lse, HeadsArg<const typename Mma::Elem> q,
                             HeadsArg<const typename Mma::Elem> k, HeadsArg<const typename Mma::Elem> v, Geometry g) {
  using E = typename Mma::Elem;
  using L = Tiles<Mma, D>;
  extern __shared__ __align__(128) unsigned char shared[];
  SharedCursor cursor{shared};
  E* sQ = cursor.take<E>(L::elem_bytes);
  E* sK = cursor.take<E>(L::elem_bytes);
  E* sV = cursor.take<E>(L::elem_bytes);
  float* sS = cursor.take<float>(L::score_bytes);
  E* sP = cursor.take<E>(L::prob_bytes);
  float* sO = cursor.take<float>(L::acc_bytes);
  float* row_max = cursor.take<float>(L::row_bytes);
  float* row_sum = cursor.take<float>(L::row_bytes);

  const int bh = blockIdx.x, b = bh / g.heads, h = bh % g.heads, q0 = blockIdx.y * kTile;
  const int q_rows = min(kTile, g.tq - q0);
  load_tile<D, L::ld_elem>(sQ, q, b, h, q0, q_rows);
  zero_acc<L::ld_acc>(sO, D);
  if (threadIdx.x < kTile) {
    row_max[threadIdx.x] = -INFINITY;
    row_sum[threadIdx.x] = 0.0f;
  }
  for (int k0 = 0; k0 < g.tk; k0 += kTile) {
    const int k_rows = min(kTile, g.tk - k0);
    __syncthreads();  // the previous tile's products are done with sK, sV and sP
    load_tile<D, L::ld_elem>(sK, k, b, h, k0, k_rows);
    load_tile<D, L::ld_elem>(sV, v, b, h, k0, k_rows);
    __syncthreads();
    Mma::template abt<kTile, D>(sS, L::ld_score, sQ, L::ld_elem, sK, L::ld_elem);
    __syncthreads();
    {  // Online softmax: four neighbouring threads share a row, 16 columns each.
      constexpr int kPerRow = kThreads / kTile, kCols = kTile / kPerRow;
      const int r = threadIdx.x / kPerRow, part = threadIdx.x % kPerRow;
      const float* s_row = sS + r * L::ld_score;
      float tile_max = -INFINITY;
      for (int c = kCols * part; c < kCols * part + kCols; ++c)
        if (c < k_rows) tile_max = fmaxf(tile_max, s_row[c] * g.scale);
      for (int offset = 1; offset < kPerRow; offset *= 2)
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
      const float old_max = row_max[r], new_max = fmaxf(old_max, tile_max);
      float tile_sum = 0.0f;
      for (int c = kCols * part; c < kCols * part + kCols; ++c) {
        const float p = c < k_rows ? __expf(s_row[c] * g.scale - new_max) : 0.0f;
        sP[r * L::ld_prob + c] = from_f32<E>(p);
        tile_sum += p;
      }
      for (int offset = 1; offset < kPerRow; offset *= 2) tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, offset);
      const float rescale = __expf(old_max - new_max);  // 0 on the first tile (old_max = -inf)
      for (int d = part * (D / kPerRow); d < (part + 1) * (D / kPerRow); ++d) sO[r * L::ld_acc + d] *= rescale;
      __syncwarp();
      if (part == 0) {
        row_max[r] = new_max;
        row_sum[r] = row_sum[r] * rescale + tile_sum;
      }
    }
    __syncthreads();
    Mma::template accumulate<Left::as_is, D, kTile>(sO, L::ld_acc, sP, L::ld_prob, sV, L::ld_elem);
  }
  __syncthreads();
  if (threadIdx.x < kTile) {
    const int r = threadIdx.x;
    if (r < q_rows) lse[static_cast<int64_t>(bh) * g.tq + q0 + r] = row_max[r] + logf(row_sum[r]);
    row_sum[r] = 1.0f / row_sum[r];
  }
  __syncthreads();
  store_tile<D, L::ld_acc>(out, b, h, q0, q_rows, sO, row_sum);
}

// dot[bh, t] = Σ_d dO·O: one warp per query row.
template <class E, int D>
__global__ void row_dot_kernel(float* dot, HeadsArg<const E> grad_out, HeadsArg<const E> out, int heads, int tq,
                               int64_t rows) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const int t = static_cast<int>(row % tq), bh = static_cast<int>(row / tq), b = bh / heads, h = bh % heads;
  const E *g = grad_out.row(b, h, t), *o = out.row(b, h, t);
  float sum = 0.0f;
  for (int d = lane; d < D; d += 32) sum += to_f32(g[d]) * to_f32(o[d]);
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (lane == 0) dot[row] = sum;
}

// The query tile's log-sum-exp and row dots into shared memory (0 on padding rows).
__device__ void load_rows(float* s_lse, float* s_dot, const float* lse, const float* dot, int64_t offset, int valid) {
  if (threadIdx.x < kTile) {
    const int r = threadIdx.x;
    s_lse[r] = r < valid ? lse[offset + r] : 0.0f;
    s_dot[r] = r < valid ? dot[offset + r] : 0.0f;
  }
}

// P = exp(S·scale − lse) in place in sS (f32) and as the operand sP; 0 outside the valid tile.
template <class L, class E>
__device__ void probabilities(float* sS, E* sP, const float* s_lse, int q_rows, int k_rows, float scale) {
  for (int i = threadIdx.x; i < kTile * kTile; i += kThreads) {
    const int r = i / kTile, c = i % kTile;
    float& s = sS[r * L::ld_score + c];
    const float p = r < q_rows && c < k_rows ? __expf(s * scale - s_lse[r]) : 0.0f;
    s = p;
    if (sP) sP[r * L::ld_prob + c] = from_f32<E>(p);
  }
}

// dS = P ∘ (dP − dot) · scale as an operand tile (P from sS, dP from sdP).
template <class L, class E>
__device__ void score_grads(E* sdS, const float* sS, const float* sdP, const float* s_dot, float scale) {
  for (int i = threadIdx.x; i < kTile * kTile; i += kThreads) {
    const int r = i / kTile, c = i % kTile;
    sdS[r * L::ld_prob + c] = from_f32<E>(sS[r * L::ld_score + c] * (sdP[r * L::ld_score + c] - s_dot[r]) * scale);
  }
}

// dK and dV of one key tile: a loop over every query tile.
template <class Mma, int D>
__global__ void __launch_bounds__(kThreads)
    attention_grad_kv_kernel(HeadsArg<typename Mma::Elem> grad_k, HeadsArg<typename Mma::Elem> grad_v,
                             HeadsArg<const typename Mma::Elem> q, HeadsArg<const typename Mma::Elem> k,
                             HeadsArg<const typename Mma::Elem> v, HeadsArg<const typename Mma::Elem> grad_out,
                             const float* lse, const float* dot, Geometry g) {
  using E = typename Mma::Elem;
  using L = Tiles<Mma, D>;
  extern __shared__ __align__(128) unsigned char shared[];
  SharedCursor cursor{shared};
  E* sK = cursor.take<E>(L::elem_bytes);
  E* sV = cursor.take<E>(L::elem_bytes);
  E* sQ = cursor.take<E>(L::elem_bytes);
  E* sdO = cursor.take<E>(L::elem_bytes);
  float* sS = cursor.take<float>(L::score_bytes);
  float* sdP = cursor.take<float>(L::score_bytes);
  E* sP = cursor.take<E>(L::prob_bytes);
  E* sdS = sP;  // dS replaces P once dV has used it
  float* sdK = cursor.take<float>(L::acc_bytes);
  float* sdV = cursor.take<float>(L::acc_bytes);
  float* s_lse = cursor.take<float>(L::row_bytes);
  float* s_dot = cursor.take<float>(L::row_bytes);

  const int bh = blockIdx.x, b = bh / g.heads, h = bh % g.heads, k0 = blockIdx.y * kTile;
  const int k_rows = min(kTile, g.tk - k0);
  load_tile<D, L::ld_elem>(sK, k, b, h, k0, k_rows);
  load_tile<D, L::ld_elem>(sV, v, b, h, k0, k_rows);
  zero_acc<L::ld_acc>(sdK, D);
  zero_acc<L::ld_acc>(sdV, D);
  for (int q0 = 0; q0 < g.tq; q0 += kTile) {
    const int q_rows = min(kTile, g.tq - q0);
    __syncthreads();  // the previous query tile's products are done
    load_tile<D, L::ld_elem>(sQ, q, b, h, q0, q_rows);
    load_tile<D, L::ld_elem>(sdO, grad_out, b, h, q0, q_rows);
    load_rows(s_lse, s_dot, lse, dot, static_cast<int64_t>(bh) * g.tq + q0, q_rows);
    __syncthreads();
    Mma::template abt<kTile, D>(sS, L::ld_score, sQ, L::ld_elem, sK, L::ld_elem);  // S [q, key]
    __syncthreads();
    probabilities<L>(sS, sP, s_lse, q_rows, k_rows, g.scale);
    __syncthreads();
    Mma::template accumulate<Left::transposed, D, kTile>(sdV, L::ld_acc, sP, L::ld_prob, sdO, L::ld_elem);     // dV += Pᵀ·dO
    Mma::template abt<kTile, D>(sdP, L::ld_score, sdO, L::ld_elem, sV, L::ld_elem);       // dP = dO·Vᵀ
    __syncthreads();
    score_grads<L>(sdS, sS, sdP, s_dot, g.scale);
    __syncthreads();
    Mma::template accumulate<Left::transposed, D, kTile>(sdK, L::ld_acc, sdS, L::ld_prob, sQ, L::ld_elem);     // dK += dSᵀ·Q
  }
  __syncthreads();
  store_tile<D, L::ld_acc>(grad_k, b, h, k0, k_rows, sdK, nullptr);
  store_tile<D, L::ld_acc>(grad_v, b, h, k0, k_rows, sdV, nullptr);
}

// dQ of one query tile: a loop over every key tile.
template <class Mma, int D>
__global__ void __launch_bounds__(kThreads)
    attention_grad_q_kernel(HeadsArg<typename Mma::Elem> grad_q, HeadsArg<const typename Mma::Elem> q,
                            HeadsArg<const typename Mma::Elem> k, HeadsArg<const typename Mma::Elem> v,
                            HeadsArg<const typename Mma::Elem> grad_out, const float* lse, const float* dot,
                            Geometry g) {
  using E = typename Mma::Elem;
  using L = Tiles<Mma, D>;
  extern __shared__ __align__(128) unsigned char shared[];
  SharedCursor cursor{shared};
  E* sQ = cursor.take<E>(L::elem_bytes);
  E* sdO = cursor.take<E>(L::elem_bytes);
  E* sK = cursor.take<E>(L::elem_bytes);
  E* sV = cursor.take<E>(L::elem_bytes);
  float* sS = cursor.take<float>(L::score_bytes);
  float* sdP = cursor.take<float>(L::score_bytes);
  E* sdS = cursor.take<E>(L::prob_bytes);
  float* sdQ = cursor.take<float>(L::acc_bytes);
  float* s_lse = cursor.take<float>(L::row_bytes);
  float* s_dot = cursor.take<float>(L::row_bytes);

  const int bh = blockIdx.x, b = bh / g.heads, h = bh % g.heads, q0 = blockIdx.y * kTile;
  const int q_rows = min(kTile, g.tq - q0);
  load_tile<D, L::ld_elem>(sQ, q, b, h, q0, q_rows);
  load_tile<D, L::ld_elem>(sdO, grad_out, b, h, q0, q_rows);
  load_rows(s_lse, s_dot, lse, dot, static_cast<int64_t>(bh) * g.tq + q0, q_rows);
  zero_acc<L::ld_acc>(sdQ, D);
  for (int k0 = 0; k0 < g.tk; k0 += kTile) {
    const int k_rows = min(kTile, g.tk - k0);
    __syncthreads();
    load_tile<D, L::ld_elem>(sK, k, b, h, k0, k_rows);
    load_tile<D, L::ld_elem>(sV, v, b, h, k0, k_rows);
    __syncthreads();
    Mma::template abt<kTile, D>(sS, L::ld_score, sQ, L::ld_elem, sK, L::ld_elem);
    Mma::template abt<kTile, D>(sdP, L::ld_score, sdO, L::ld_elem, sV, L::ld_elem);
    __syncthreads();
    probabilities<L, E>(sS, nullptr, s_lse, q_rows, k_rows, g.scale);
    __syncthreads();
    score_grads<L>(sdS, sS, sdP, s_dot, g.scale);
    __syncthreads();
    Mma::template accumulate<Left::as_is, D, kTile>(sdQ, L::ld_acc, sdS, L::ld_prob, sK, L::ld_elem);  // dQ += dS·K
  }
  __syncthreads();
  store_tile<D, L::ld_acc>(grad_q, b, h, q0, q_rows, sdQ, nullptr);
}

// Calls f(Mma{}, std::integral_constant<int, D>{}) for the tensors' dtype, head dim and whether
// f32 may use TF32.
template <class F>
void with_kernel_config(DType dtype, int64_t dim, bool allow_tf32, F&& f) {
  auto by_dim = [&](auto mma) {
    if (dim == 32) return f(mma, std::integral_constant<int, 32>{});
    if (dim == 64) return f(mma, std::integral_constant<int, 64>{});
    TG_THROW(NotImplementedError, "scaled_dot_product_attention on CUDA: head dims 32 and 64 are supported, got ",
             dim, " (use the explicit attention)");
  };
  if (dtype == DType::f32) return allow_tf32 ? by_dim(WmmaMma<float>{}) : by_dim(SimtMma{});
  if (dtype == DType::bf16) return by_dim(WmmaMma<__nv_bfloat16>{});
  TG_THROW(TypeError, "scaled_dot_product_attention on CUDA: expected f32 or bf16, got ", dtype_name(dtype));
}

// Launches `kernel` with `shared_bytes` of dynamic shared memory (above the 48 KiB default).
template <class Kernel, class... Args>
void launch(Kernel kernel, dim3 grid, size_t shared_bytes, Args... args) {
  TG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(shared_bytes)));
  kernel<<<grid, kThreads, shared_bytes, current_stream()>>>(args...);
  TG_CUDA_CHECK_LAUNCH();
}

Geometry geometry(const Tensor& q, const Tensor& k, double scale) {
  return {static_cast<int>(q.size(1)), static_cast<int>(q.size(2)), static_cast<int>(k.size(2)),
          static_cast<float>(scale)};
}

unsigned tiles(int64_t tokens) { return static_cast<unsigned>((tokens + kTile - 1) / kTile); }

// Batch × heads is the grid's x dimension (up to 2^31 - 1), the tiles its y (up to 65535);
// indices are ints in the kernels.
void check_grid(const Tensor& q, const Tensor& k) {
  TG_CHECK(q.size(0) * q.size(1) <= INT32_MAX, NotImplementedError,
           "scaled_dot_product_attention on CUDA: batch × heads = ", q.size(0) * q.size(1), " exceeds 2^31 - 1");
  TG_CHECK(std::max(q.size(2), k.size(2)) <= int64_t{65535} * kTile, NotImplementedError,
           "scaled_dot_product_attention on CUDA: at most ", int64_t{65535} * kTile, " tokens, got ",
           std::max(q.size(2), k.size(2)));
}

}  // namespace

void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       double scale, bool allow_tf32) {
  if (cudnn_attention_forward(out, lse, q, k, v, scale)) return;
  check_grid(q, k);
  with_kernel_config(q.dtype(), q.size(3), allow_tf32, [&](auto mma, auto dim) {
    using Mma = decltype(mma);
    using E = typename Mma::Elem;
    using L = Tiles<Mma, decltype(dim)::value>;
    const size_t bytes = 3 * L::elem_bytes + L::score_bytes + L::prob_bytes + L::acc_bytes + 2 * L::row_bytes;
    launch(attention_forward_kernel<Mma, decltype(dim)::value>,
           dim3(static_cast<unsigned>(q.size(0) * q.size(1)), tiles(q.size(2))), bytes, heads_arg<E>(out),
           static_cast<float*>(lse.raw_data()), heads_arg<const E>(q), heads_arg<const E>(k), heads_arg<const E>(v),
           geometry(q, k, scale));
  });
}

void attention_backward(const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v, const Tensor& grad_out,
                        const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        double scale, bool allow_tf32) {
  if (cudnn_attention_backward(grad_q, grad_k, grad_v, grad_out, q, k, v, out, lse, scale)) return;
  check_grid(q, k);
  with_kernel_config(q.dtype(), q.size(3), allow_tf32, [&](auto mma, auto dim) {
    using Mma = decltype(mma);
    using E = typename Mma::Elem;
    constexpr int D = decltype(dim)::value;
    using L = Tiles<Mma, D>;
    const int64_t rows = q.size(0) * q.size(1) * q.size(2);
    const Tensor dot = empty({rows}, DType::f32, q.device());
    const auto* dot_data = static_cast<const float*>(dot.raw_data());
    const auto* lse_data = static_cast<const float*>(lse.raw_data());
    row_dot_kernel<E, D><<<static_cast<unsigned>((rows * 32 + kBlockSize - 1) / kBlockSize), kBlockSize, 0,
                           current_stream()>>>(static_cast<float*>(dot.raw_data()), heads_arg<const E>(grad_out),
                                               heads_arg<const E>(out), static_cast<int>(q.size(1)),
                                               static_cast<int>(q.size(2)), rows);
    TG_CUDA_CHECK_LAUNCH();
    const Geometry g = geometry(q, k, scale);
    const auto bh = static_cast<unsigned>(q.size(0) * q.size(1));
    const size_t kv_bytes =
        4 * L::elem_bytes + 2 * L::score_bytes + L::prob_bytes + 2 * L::acc_bytes + 2 * L::row_bytes;
    launch(attention_grad_kv_kernel<Mma, D>, dim3(bh, tiles(k.size(2))), kv_bytes, heads_arg<E>(grad_k),
           heads_arg<E>(grad_v), heads_arg<const E>(q), heads_arg<const E>(k), heads_arg<const E>(v),
           heads_arg<const E>(grad_out), lse_data, dot_data, g);
    const size_t q_bytes = 4 * L::elem_bytes + 2 * L::score_bytes + L::prob_bytes + L::acc_bytes + 2 * L::row_bytes;
    launch(attention_grad_q_kernel<Mma, D>, dim3(bh, tiles(q.size(2))), q_bytes, heads_arg<E>(grad_q),
           heads_arg<const E>(q), heads_arg<const E>(k), heads_arg<const E>(v), heads_arg<const E>(grad_out),
           lse_data, dot_data, g);
  });
}

}  // namespace tg::cuda
