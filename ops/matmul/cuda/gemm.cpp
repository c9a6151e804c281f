// CUDA kernels of the GEMM. Row-major operands go to column-major cuBLAS by the usual
// swap: row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a row-major matrix
// with row stride ld is, to cuBLAS, its transpose with leading dimension ld; so B goes first
// and each operand keeps its own transpose flag. Plain GEMMs use cublasGemmStridedBatchedEx, or
// cuBLASLt's matmul when GemmMath asks for it (CudaGemmBackend);
// GEMMs with a bias use cuBLASLt's bias epilogue (the bias costs no extra pass), or, where
// cuBLASLt has no kernel for the case, write the bias into C and accumulate onto it. Row sums of
// op(A) (a linear's bias gradient) come from cuBLASLt's BGRADB epilogue, which reduces cuBLAS's
// second operand — our A — over k while the GEMM reads it. cuBLASLt's plans (descriptors and
// algorithm) are made once per shape: the heuristic's first algorithm, or with autotuning the
// fastest of its first candidates, timed on the first eager call.
// One cuBLAS and one cuBLASLt handle per device, created on first use; all work is enqueued on
// current_stream().
#include <cublasLt.h>
#include <cublas_v2.h>

#include <array>
#include <cmath>
#include <climits>
#include <functional>
#include <memory>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "core/cuda/cublas_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "ops/matmul/gemm_kernels.h"

namespace tg::cuda {

namespace {

// Handles per device, created on first use. They live as long as the process: destroying them
// from static destructors would run after the CUDA runtime may already have been torn down.
template <class Handle>
class HandleCache {
 public:
  template <class Create>
  Handle get(int device, Create&& create) {
    std::lock_guard lock(mutex_);
    const auto index = static_cast<size_t>(device);
    if (handles_.size() <= index) handles_.resize(index + 1, nullptr);
    if (!handles_[index]) handles_[index] = create();
    return handles_[index];
  }

 private:
  std::mutex mutex_;
  std::vector<Handle> handles_;  // by device index
};

// The SMs a GEMM on `device` may use under `math`'s margin (0: all of them).
int sm_target(int device, GemmMath math) {
  if (math.sm_margin == 0) return 0;
  int count = 0;
  TG_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return std::max(count - math.sm_margin, 1);
}

// The caller has made `device` current.
cublasHandle_t cublas_handle(int device) {
  static HandleCache<cublasHandle_t> cache;
  cublasHandle_t handle = cache.get(device, [] {
    cublasHandle_t created = nullptr;
    TG_CUBLAS_CHECK(cublasCreate(&created));
    // bf16 GEMMs accumulate in f32, split-K partial sums included.
    TG_CUBLAS_CHECK(cublasSetMathMode(created, CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
    return created;
  });
  TG_CUBLAS_CHECK(cublasSetStream(handle, current_stream()));
  return handle;
}

cublasLtHandle_t cublaslt_handle(int device) {
  static HandleCache<cublasLtHandle_t> cache;
  return cache.get(device, [] {
    cublasLtHandle_t created = nullptr;
    TG_CUBLAS_CHECK(cublasLtCreate(&created));
    return created;
  });
}

struct GemmTypes {
  cudaDataType data;  // of A and B
  cudaDataType out;   // of C: data, or f32 for bf16 operands
  cublasComputeType_t compute;
  cudaDataType scale;  // of alpha and beta
};

// The types of a GEMM on `operands` into `out` (gemm_kernels.h: `out` is the operands' dtype or,
// for bf16 operands, f32).
GemmTypes gemm_types(DType operands, DType out, GemmMath math) {
  TG_INTERNAL_ASSERT(out == operands || (operands == DType::bf16 && out == DType::f32), "matmul on CUDA: ",
                     dtype_name(operands), " operands into ", dtype_name(out));
  const cudaDataType out_type = out == DType::f32 ? CUDA_R_32F : CUDA_R_16BF;
  switch (operands) {
    case DType::f32:
      return {CUDA_R_32F, CUDA_R_32F, math.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case DType::f64: return {CUDA_R_64F, CUDA_R_64F, CUBLAS_COMPUTE_64F, CUDA_R_64F};
    case DType::bf16: return {CUDA_R_16BF, out_type, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    default: TG_THROW(TypeError, "matmul: expected a floating dtype (f32, f64, bf16), got ", dtype_name(operands));
  }
}

// alpha or beta in either scale type.
struct Scalar {
  float f;
  double d;
  explicit Scalar(double value) : f(static_cast<float>(value)), d(value) {}
  const void* as(cudaDataType type) const { return type == CUDA_R_64F ? static_cast<const void*>(&d) : &f; }
};

int checked_int(int64_t value, const char* what) {
  TG_CHECK(value <= INT_MAX, NotImplementedError, "matmul on CUDA: ", what, " = ", value,
           " exceeds cuBLAS's 32-bit limit");
  return static_cast<int>(value);
}

cublasOperation_t blas_op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

// The column-major GEMM for row-major C [batch, M, N] = op(A)·op(B) (see the top of the file).
struct ColumnMajorShape {
  int64_t m, n, k;  // m = N, n = M
};

ColumnMajorShape column_major_shape(const Tensor& c, const Tensor& a, bool trans_a) {
  return {c.size(2), c.size(1), trans_a ? a.size(1) : a.size(2)};
}

// cuBLASLt descriptors, destroyed when the call ends. Their destroy functions only fail for an
// invalid descriptor, and a destructor must not throw, so that status is not checked.
template <class Descriptor, cublasStatus_t (*Destroy)(Descriptor)>
struct LtDeleter {
  void operator()(Descriptor descriptor) const { (void)Destroy(descriptor); }
};
using MatmulDesc = std::unique_ptr<std::remove_pointer_t<cublasLtMatmulDesc_t>,
                                   LtDeleter<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>>;
using MatrixLayout = std::unique_ptr<std::remove_pointer_t<cublasLtMatrixLayout_t>,
                                     LtDeleter<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>>;
using Preference = std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>,
                                   LtDeleter<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy>>;

// The column-major layout cuBLASLt sees for a [batch, rows, cols] row-major matrix with row
// stride `ld` and batch stride `batch_stride`.
MatrixLayout lt_layout(cudaDataType type, int64_t batch, int64_t rows, int64_t cols, int64_t ld, int64_t batch_stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  TG_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&layout, type, static_cast<uint64_t>(cols), static_cast<uint64_t>(rows), ld));
  MatrixLayout owned(layout);
  if (batch > 1) {
    const auto count = static_cast<int32_t>(batch);
    TG_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    TG_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                     &batch_stride, sizeof(batch_stride)));
  }
  return owned;
}

MatrixLayout lt_layout(cudaDataType type, const Tensor& x) {
  return lt_layout(type, x.size(0), x.size(1), x.size(2), x.stride(1), x.stride(0));
}

// Largest power of two, up to 256, that divides the address of every matrix of `x`: cuBLASLt's
// heuristic otherwise assumes 256-byte aligned operands.
uint32_t alignment_of(uintptr_t bits) {
  uint32_t align = 1;
  while (align < 256 && bits % (2 * align) == 0) align *= 2;
  return align;
}

uint32_t alignment(const Tensor& x) {
  auto bits = reinterpret_cast<uintptr_t>(x.raw_data());
  if (x.size(0) > 1) bits |= static_cast<uintptr_t>(x.stride(0)) * x.itemsize();
  return alignment_of(bits);
}

// Upper bound on the cuBLASLt workspace the heuristic may ask for; the call allocates only what
// the chosen algorithm needs, from the caching allocator.
constexpr uint64_t kLtWorkspaceLimit = 32 << 20;

// Everything that fixes a cuBLASLt epilogue GEMM's plan except the data pointers: the device,
// types, epilogue, transposes, each operand's [batch, rows, cols] with its strides, and the
// alignments.
struct LtPlanKey {
  int device;
  cudaDataType data, out;
  cublasComputeType_t compute;
  cublasLtEpilogue_t epilogue;
  bool trans_a, trans_b;
  std::array<int64_t, 15> geometry;  // per operand (c, a, b): batch, rows, cols, row and batch stride
  std::array<uint32_t, 4> alignments;  // c, a, b and the epilogue's vector
  int sm_target;                       // SMs the GEMM may use (0: all)
  bool operator==(const LtPlanKey&) const = default;
};

struct LtPlanKeyHash {
  size_t operator()(const LtPlanKey& key) const {
    size_t h = std::hash<int>{}(key.device) ^ (static_cast<size_t>(key.data) << 8) ^
               (static_cast<size_t>(key.compute) << 16) ^ (static_cast<size_t>(key.trans_a) << 24) ^
               (static_cast<size_t>(key.trans_b) << 25) ^ (static_cast<size_t>(key.out) << 32) ^
               (static_cast<size_t>(key.epilogue) << 40) ^ (static_cast<size_t>(key.sm_target) << 48);
    for (int64_t v : key.geometry) h = h * 1000003u ^ std::hash<int64_t>{}(v);
    for (uint32_t v : key.alignments) h = h * 1000003u ^ v;
    return h;
  }
};

// The descriptors and the heuristic's choice for one key; `supported` is false when cuBLASLt has
// no algorithm for it.
struct LtPlan {
  MatmulDesc desc;
  MatrixLayout first, second, out;
  cublasLtMatmulHeuristicResult_t heuristic{};
  bool supported = false;
};

LtPlanKey lt_plan_key(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const GemmTypes& t,
                      cublasLtEpilogue_t epilogue, const Tensor& vector, int sm_target) {
  const auto vector_bits = vector.defined() ? reinterpret_cast<uintptr_t>(vector.raw_data()) : 0;
  LtPlanKey key{c.device().index, t.data, t.out, t.compute, epilogue, trans_a, trans_b, {},
                {alignment(c), alignment(a), alignment(b), alignment_of(vector_bits)}, sm_target};
  size_t i = 0;
  for (const Tensor* x : {&c, &a, &b})
    for (int64_t v : {x->size(0), x->size(1), x->size(2), x->stride(1), x->stride(0)}) key.geometry[i++] = v;
  return key;
}

// How many of the heuristic's algorithms autotuning times, and how often each.
constexpr int kTunedCandidates = 8;
constexpr int kTimedRuns = 3;

struct LtOperands {
  const Tensor &c, &a, &b;
  const void* vector;  // the epilogue's bias or bias-gradient pointer, or null
};

void run_lt(const LtPlan& plan, const cublasLtMatmulAlgo_t& algo, size_t workspace_bytes, const LtOperands& x,
            const GemmTypes& t, int device, bool accumulate) {
  // Released when this call returns: the caching allocator hands the block out again only to
  // work enqueued later on the same stream, so the GEMM below is done with it by then.
  const Tensor workspace =
      workspace_bytes > 0 ? empty({static_cast<int64_t>(workspace_bytes)}, DType::u8, x.c.device()) : Tensor();
  const Scalar one(1), beta(accumulate ? 1 : 0);
  TG_CUBLAS_CHECK(cublasLtMatmul(cublaslt_handle(device), plan.desc.get(), one.as(t.scale), x.b.raw_data(),
                                 plan.first.get(), x.a.raw_data(), plan.second.get(), beta.as(t.scale), x.c.raw_data(),
                                 plan.out.get(), x.c.raw_data(), plan.out.get(), &algo,
                                 workspace.defined() ? workspace.raw_data() : nullptr, workspace_bytes,
                                 current_stream()));
}

// The fastest of `candidates` on these operands: each runs once to warm up, then kTimedRuns
// times between two events, and the host waits for the last event — once per plan, on the
// first eager call of its shape. The runs write C (and the epilogue's vector), which the
// caller's own launch then overwrites.
size_t fastest_candidate(const LtPlan& plan, const std::vector<cublasLtMatmulHeuristicResult_t>& candidates,
                         const LtOperands& x, const GemmTypes& t, int device) {
  cudaEvent_t start = nullptr, stop = nullptr;
  TG_CUDA_CHECK(cudaEventCreate(&start));
  TG_CUDA_CHECK(cudaEventCreate(&stop));
  size_t best = 0;
  float best_ms = INFINITY;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const cublasLtMatmulHeuristicResult_t& r = candidates[i];
    run_lt(plan, r.algo, r.workspaceSize, x, t, device, /*accumulate=*/false);
    TG_CUDA_CHECK(cudaEventRecord(start, current_stream()));
    for (int run = 0; run < kTimedRuns; ++run) run_lt(plan, r.algo, r.workspaceSize, x, t, device, false);
    TG_CUDA_CHECK(cudaEventRecord(stop, current_stream()));
    TG_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    TG_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (ms < best_ms) best_ms = ms, best = i;
  }
  TG_CUDA_CHECK(cudaEventDestroy(start));
  TG_CUDA_CHECK(cudaEventDestroy(stop));
  return best;
}

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  TG_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

// Builds the plan: descriptors, preferences and a heuristic query, the expensive part of a
// cuBLASLt call on the host (tens of microseconds), done once per distinct key; with `tune`, the
// fastest of the heuristic's first kTunedCandidates algorithms (fastest_candidate).
std::unique_ptr<LtPlan> make_lt_plan(const LtOperands& x, bool trans_a, bool trans_b, const GemmTypes& t,
                                     const LtPlanKey& key, bool tune) {
  auto plan = std::make_unique<LtPlan>();
  cublasLtMatmulDesc_t raw_desc = nullptr;
  TG_CUBLAS_CHECK(cublasLtMatmulDescCreate(&raw_desc, t.compute, t.scale));
  plan->desc.reset(raw_desc);
  const cublasOperation_t first_op = blas_op(trans_b), second_op = blas_op(trans_a);
  TG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_TRANSA, &first_op, sizeof(first_op)));
  TG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_TRANSB, &second_op, sizeof(second_op)));
  TG_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &key.epilogue, sizeof(key.epilogue)));
  TG_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &x.vector, sizeof(x.vector)));
  if (key.sm_target > 0)
    TG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, &key.sm_target,
                                                   sizeof(key.sm_target)));
  plan->first = lt_layout(t.data, x.b);
  plan->second = lt_layout(t.data, x.a);
  plan->out = lt_layout(t.out, x.c);

  cublasLtMatmulPreference_t raw_pref = nullptr;
  TG_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&raw_pref));
  const Preference pref(raw_pref);
  // Partial sums of split-K kernels stay in the compute type (f32 for bf16 outputs).
  const uint32_t reduction = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  const uint32_t align_out = key.alignments[0], align_second = key.alignments[1], align_first = key.alignments[2];
  TG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(raw_pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                       &kLtWorkspaceLimit, sizeof(kLtWorkspaceLimit)));
  TG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(raw_pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                       &reduction, sizeof(reduction)));
  TG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                       &align_first, sizeof(align_first)));
  TG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                       &align_second, sizeof(align_second)));
  TG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                       &align_out, sizeof(align_out)));
  TG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                       &align_out, sizeof(align_out)));
  std::vector<cublasLtMatmulHeuristicResult_t> candidates(tune ? kTunedCandidates : 1);
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      cublaslt_handle(key.device), raw_desc, plan->first.get(), plan->second.get(), plan->out.get(), plan->out.get(),
      raw_pref, static_cast<int>(candidates.size()), candidates.data(), &found);
  if (status != CUBLAS_STATUS_NOT_SUPPORTED) TG_CUBLAS_CHECK(status);
  plan->supported = status == CUBLAS_STATUS_SUCCESS && found > 0;
  if (!plan->supported) return plan;
  candidates.resize(static_cast<size_t>(found));
  plan->heuristic = candidates[found > 1 ? fastest_candidate(*plan, candidates, x, t, key.device) : 0];
  return plan;
}

// C = op(A)·op(B) (+ C with `accumulate`) through cuBLASLt with `epilogue` (DEFAULT: nothing
// more; BIAS: + vector on every row; BGRADB: the row sums of op(A) into vector); false when
// cuBLASLt has no algorithm for the case (nothing was enqueued then). Plans are cached per key
// for the process's life (like the handles), so a training step pays only for setting the
// vector pointer and the launch.
bool lt_gemm(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, cublasLtEpilogue_t epilogue,
             const Tensor& vector, GemmMath math, bool accumulate = false) {
  const GemmTypes t = gemm_types(a.dtype(), c.dtype(), math);
  if (t.data == CUDA_R_64F) return false;  // cuBLASLt's epilogues cover f32 and bf16
  static std::mutex mutex;
  static auto* plans = new std::unordered_map<LtPlanKey, std::unique_ptr<LtPlan>, LtPlanKeyHash>();
  const LtPlanKey key = lt_plan_key(c, a, trans_a, b, trans_b, t, epilogue, vector, sm_target(c.device().index, math));
  const LtOperands operands{c, a, b, vector.defined() ? vector.raw_data() : nullptr};
  std::lock_guard lock(mutex);  // the cached descriptor's vector pointer is set per call
  std::unique_ptr<LtPlan>& plan = (*plans)[key];
  if (!plan)
    plan = make_lt_plan(operands, trans_a, trans_b, t, key,
                        math.autotune && !accumulate && !capturing(current_stream()));
  if (!plan->supported) return false;

  TG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, &operands.vector,
                                                 sizeof(operands.vector)));
  run_lt(*plan, plan->heuristic.algo, plan->heuristic.workspaceSize, operands, t, key.device, accumulate);
  return true;
}

}  // namespace

void gemm(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, bool accumulate, GemmMath math) {
  DeviceGuard guard(c.device().index);
  if (math.cublaslt && lt_gemm(c, a, trans_a, b, trans_b, CUBLASLT_EPILOGUE_DEFAULT, Tensor(), math, accumulate)) return;
  const GemmTypes t = gemm_types(a.dtype(), c.dtype(), math);
  const ColumnMajorShape s = column_major_shape(c, a, trans_a);
  const Scalar one(1), beta(accumulate ? 1 : 0);
  const cublasHandle_t handle = cublas_handle(c.device().index);
  TG_CUBLAS_CHECK(cublasSetSmCountTarget(handle, sm_target(c.device().index, math)));
  TG_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      handle, blas_op(trans_b), blas_op(trans_a), checked_int(s.m, "N"), checked_int(s.n, "M"),
      checked_int(s.k, "K"), one.as(t.scale), b.raw_data(), t.data, checked_int(b.stride(1), "ldb"), b.stride(0),
      a.raw_data(), t.data, checked_int(a.stride(1), "lda"), a.stride(0), beta.as(t.scale), c.raw_data(), t.out,
      checked_int(c.stride(1), "ldc"), c.stride(0), checked_int(c.size(0), "batch"), t.compute, CUBLAS_GEMM_DEFAULT));
}

void gemm_bias(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias,
               GemmMath math) {
  DeviceGuard guard(c.device().index);
  if (lt_gemm(c, a, trans_a, b, trans_b, CUBLASLT_EPILOGUE_BIAS, bias, math)) return;
  c.copy_(bias.raw_expand(c.shape()));
  gemm(c, a, trans_a, b, trans_b, /*accumulate=*/true, math);
}

bool gemm_row_sums(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                   const Tensor& row_sums, GemmMath math) {
  TG_INTERNAL_ASSERT(c.size(0) == 1 && row_sums.numel() == c.size(1), "gemm_row_sums: C ", c.shape().str(),
                     ", row sums ", row_sums.shape().str());
  DeviceGuard guard(c.device().index);
  return lt_gemm(c, a, trans_a, b, trans_b, CUBLASLT_EPILOGUE_BGRADB, row_sums, math);
}

}  // namespace tg::cuda
