// The bf16 fused attention through cuDNN's graph API (backend descriptors). cuDNN's fused
// flash-attention engines are chosen by its heuristics for an operation graph of a known shape:
// the graphs below are the ones cudnn-frontend's sdpa and sdpa_backward nodes lower to, without
// masks, bias or dropout (which nn::Attention never asks of the fused path):
//
//   forward   S = Q·Kᵀ · scale;  M = rowmax(S);  E = exp(S − M);  Z = rowsum(E)
//             stats = M + log Z (the row log-sum-exp, kept);  P = E / Z (bf16);  O = P·V
//   backward  dot = rowsum(dO ∘ O);  P = exp(Q·Kᵀ · scale − stats)
//             dV = Pᵀ·dO;  dS = P ∘ (dO·Vᵀ − dot) · scale;  dK = dSᵀ·Q;  dQ = dS·K
//
// The backward is cudnn-frontend's deterministic variant (dQ written by its matmul, no f32
// accumulator that thread blocks add into), so reruns are bit-identical, as with tapegrad's own
// kernels; where no engine takes it, the accumulating variant is built and the report says that
// reruns may differ in the last bits. Plans are built once per device, shape and layout and
// cached for the process (cuDNN compiles some engines at run time: the first step of a shape
// takes seconds).
#include "ops/cuda/attention_cudnn.h"

#include "ops/attention.h"

#if TG_WITH_CUDNN

#include <array>
#include <cstdio>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cuda/cudnn_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"

namespace tg::cuda {

namespace {

// One backend descriptor, destroyed with the object (its destroy only fails for an invalid
// descriptor, and a destructor must not throw, so that status is not checked).
class Descriptor {
 public:
  explicit Descriptor(cudnnBackendDescriptorType_t type) { TG_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &raw_)); }
  ~Descriptor() { (void)cudnnBackendDestroyDescriptor(raw_); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  cudnnBackendDescriptor_t raw() const { return raw_; }

  template <class T>
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, const T* values,
                  int64_t count = 1) {
    TG_CUDNN_CHECK(cudnnBackendSetAttribute(raw_, name, type, count, values));
    return *this;
  }
  Descriptor& set(cudnnBackendAttributeName_t name, const Descriptor& value) {
    const cudnnBackendDescriptor_t raw = value.raw();
    return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, &raw);
  }
  Descriptor& finalize() {
    TG_CUDNN_CHECK(cudnnBackendFinalize(raw_));
    return *this;
  }

 private:
  cudnnBackendDescriptor_t raw_ = nullptr;
};

using Dims = std::array<int64_t, 4>;

// The graphs' non-virtual tensors (the variant pack's unique ids); virtual ones count from 100.
enum Uid : int64_t {
  kQ = 1,
  kK,
  kV,
  kO,
  kStats,
  kScale,
  kGradOut,
  kGradQ,
  kGradK,
  kGradV,
  kRowDot,
  kGradQAccumulator,
  kOne,
  kFirstVirtual = 100
};

// A finalized execution plan and what keeps it valid.
struct Plan {
  std::vector<std::unique_ptr<Descriptor>> parts;  // tensors, operations, graph, engine configs
  const Descriptor* plan = nullptr;
  int64_t workspace_bytes = 0;
  bool accumulates_grad_q = false;  // the backward's non-deterministic variant (needs kGradQAccumulator)
};

// Builds one operation graph from tensors and operations, then its execution plan.
class GraphBuilder {
 public:
  const Descriptor& tensor(int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides) {
    return make_tensor(uid, type, dims, strides, false, false);
  }
  const Descriptor& scalar(int64_t uid) { return make_tensor(uid, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true); }
  const Descriptor& virtual_tensor(cudnnDataType_t type, const Dims& dims, const Dims& strides) {
    return make_tensor(next_virtual_++, type, dims, strides, true, false);
  }

  // y = mode(x) or mode(x, b); the math in f32.
  const Descriptor& pointwise(cudnnPointwiseMode_t mode, const Descriptor& x, const Descriptor* b, const Descriptor& y) {
    auto& desc = keep(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    const cudnnDataType_t math = CUDNN_DATA_FLOAT;
    desc.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &mode)
        .set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, &math)
        .finalize();
    auto& op = keep(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, desc).set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    if (b) op.set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b);
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y).finalize();
    ops_.push_back(op.raw());
    return y;
  }
  // y [.., 1] = reduce(x) over the dims where y has extent 1.
  const Descriptor& reduction(cudnnReduceTensorOp_t reduce, const Descriptor& x, const Descriptor& y) {
    auto& desc = keep(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    const cudnnDataType_t math = CUDNN_DATA_FLOAT;
    desc.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, &reduce)
        .set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &math)
        .finalize();
    auto& op = keep(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_REDUCTION_DESC, desc)
        .set(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
        .set(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
        .finalize();
    ops_.push_back(op.raw());
    return y;
  }
  // c = a·b over the last two dims, batched over the first two; f32 accumulation.
  const Descriptor& matmul(const Descriptor& a, const Descriptor& b, const Descriptor& c) {
    auto& desc = keep(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    const cudnnDataType_t math = CUDNN_DATA_FLOAT;
    desc.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &math).finalize();
    auto& op = keep(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
        .set(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
        .set(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
        .set(CUDNN_ATTR_OPERATION_MATMUL_DESC, desc)
        .finalize();
    ops_.push_back(op.raw());
    return c;
  }
  // y: the same elements as x under other dims and strides (a transpose).
  const Descriptor& reshape(const Descriptor& x, const Descriptor& y) {
    auto& op = keep(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x).set(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y).finalize();
    ops_.push_back(op.raw());
    return y;
  }

  // The operation graph and the first engine configuration of the heuristics (mode A, then the
  // fallback list) whose plan finalizes. Throws BackendError with cuDNN's reason when none does.
  std::unique_ptr<Plan> build(cudnnHandle_t handle) {
    auto& graph = keep(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"  // the handle attributes: still what cuDNN 9 reads
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, &handle)
        .set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ops_.data(), static_cast<int64_t>(ops_.size()))
        .finalize();
    std::string reasons;
    for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      Descriptor heuristics(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
      heuristics.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph)
          .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, &mode);
      if (const cudnnStatus_t s = cudnnBackendFinalize(heuristics.raw()); s != CUDNN_STATUS_SUCCESS) {
        reasons += detail::concat("; heuristics ", static_cast<int>(mode), ": ", detail::cudnn_error_text(s));
        continue;
      }
      int64_t count = 0;
      TG_CUDNN_CHECK(cudnnBackendGetAttribute(heuristics.raw(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
      std::vector<cudnnBackendDescriptor_t> configs;
      const size_t first = parts_.size();
      for (int64_t i = 0; i < count; ++i) configs.push_back(keep(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR).raw());
      TG_CUDNN_CHECK(cudnnBackendGetAttribute(heuristics.raw(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count, configs.data()));
      for (int64_t i = 0; i < count; ++i) {
        auto plan = std::make_unique<Descriptor>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, &handle)
            .set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, &configs[static_cast<size_t>(i)]);
        if (const cudnnStatus_t s = cudnnBackendFinalize(plan->raw()); s != CUDNN_STATUS_SUCCESS) {
          reasons += detail::concat("; engine config ", i, ": ", detail::cudnn_error_text(s));
          continue;
        }
        auto result = std::make_unique<Plan>();
        TG_CUDNN_CHECK(cudnnBackendGetAttribute(plan->raw(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                CUDNN_TYPE_INT64, 1, nullptr, &result->workspace_bytes));
        result->plan = plan.get();
        parts_.push_back(std::move(plan));
        result->parts = std::move(parts_);
        return result;
      }
      if (count == 0) reasons += detail::concat("; heuristics ", static_cast<int>(mode), ": no engine configuration");
      parts_.resize(first);  // this mode's configs
    }
#pragma GCC diagnostic pop
    throw BackendError(detail::concat("no cuDNN engine accepts the graph", reasons));
  }

 private:
  Descriptor& keep(cudnnBackendDescriptorType_t type) {
    parts_.push_back(std::make_unique<Descriptor>(type));
    return *parts_.back();
  }
  const Descriptor& make_tensor(int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides,
                                bool is_virtual, bool by_value) {
    auto& t = keep(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t alignment = 16;  // every pointer and stride is checked for it (eligible())
    t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, &type)
        .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, dims.data(), 4)
        .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, strides.data(), 4)
        .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, &uid)
        .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, &alignment)
        .set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, &is_virtual)
        .set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, &by_value)
        .finalize();
    return t;
  }

  std::vector<std::unique_ptr<Descriptor>> parts_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  int64_t next_virtual_ = kFirstVirtual;
};

Dims dims_of(const Tensor& t) { return {t.size(0), t.size(1), t.size(2), t.size(3)}; }
Dims strides_of(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }
// The [.., T, D] tensor viewed as its transpose [.., D, T].
Dims transposed(Dims d) {
  std::swap(d[2], d[3]);
  return d;
}
Dims contiguous_strides(const Dims& d) { return {d[1] * d[2] * d[3], d[2] * d[3], d[3], 1}; }

// The shapes of one call: q [b, h, sq, d], k and v [b, h, skv, d].
struct Shape4 {
  int64_t b, h, sq, skv, d;
};

Shape4 shape_of(const Tensor& q, const Tensor& k) { return {q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)}; }

// Forward: q, k, v, out as given, lse contiguous [b, h, sq, 1] f32.
std::unique_ptr<Plan> build_forward(cudnnHandle_t handle, const Tensor& out, const Tensor& q, const Tensor& k,
                                    const Tensor& v) {
  const auto [b, h, sq, skv, d] = shape_of(q, k);
  const cudnnDataType_t io = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  const Dims scores{b, h, sq, skv}, scores_strides = contiguous_strides(scores), rows{b, h, sq, 1},
      rows_strides = contiguous_strides(rows);
  GraphBuilder g;
  const auto& Q = g.tensor(kQ, io, dims_of(q), strides_of(q));
  const auto& Kt = g.tensor(kK, io, transposed(dims_of(k)), transposed(strides_of(k)));
  const auto& V = g.tensor(kV, io, dims_of(v), strides_of(v));
  const auto& scale = g.scalar(kScale);
  const auto& S = g.matmul(Q, Kt, g.virtual_tensor(f32, scores, scores_strides));
  const auto& scaled = g.pointwise(CUDNN_POINTWISE_MUL, S, &scale, g.virtual_tensor(f32, scores, scores_strides));
  const auto& row_max = g.reduction(CUDNN_REDUCE_TENSOR_MAX, scaled, g.virtual_tensor(f32, rows, rows_strides));
  const auto& shifted =
      g.pointwise(CUDNN_POINTWISE_SUB, scaled, &row_max, g.virtual_tensor(f32, scores, scores_strides));
  const auto& E = g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, g.virtual_tensor(f32, scores, scores_strides));
  const auto& Z = g.reduction(CUDNN_REDUCE_TENSOR_ADD, E, g.virtual_tensor(f32, rows, rows_strides));
  const auto& log_z = g.pointwise(CUDNN_POINTWISE_LOG, Z, nullptr, g.virtual_tensor(f32, rows, rows_strides));
  g.pointwise(CUDNN_POINTWISE_ADD, row_max, &log_z, g.tensor(kStats, f32, rows, rows_strides));
  const auto& P = g.pointwise(CUDNN_POINTWISE_DIV, E, &Z, g.virtual_tensor(io, scores, scores_strides));
  g.matmul(P, V, g.tensor(kO, io, dims_of(out), strides_of(out)));
  return g.build(handle);
}

// Backward: grad_out in out's layout... any layout with a contiguous last dim; the gradients as
// given. `deterministic`: dQ from its matmul directly; else through an f32 accumulator.
std::unique_ptr<Plan> build_backward(cudnnHandle_t handle, const Tensor& grad_q, const Tensor& grad_k,
                                     const Tensor& grad_v, const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                     const Tensor& v, const Tensor& out, bool deterministic) {
  const auto [b, h, sq, skv, d] = shape_of(q, k);
  const cudnnDataType_t io = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  const Dims scores{b, h, sq, skv}, scores_strides = contiguous_strides(scores), rows{b, h, sq, 1},
      rows_strides = contiguous_strides(rows);
  const Dims scores_t{b, h, skv, sq}, scores_t_strides{h * sq * skv, sq * skv, 1, skv};
  GraphBuilder g;
  const auto& Q = g.tensor(kQ, io, dims_of(q), strides_of(q));
  const auto& Kt = g.tensor(kK, io, transposed(dims_of(k)), transposed(strides_of(k)));
  const auto& Vt = g.tensor(kV, io, transposed(dims_of(v)), transposed(strides_of(v)));
  const auto& O = g.tensor(kO, io, dims_of(out), strides_of(out));
  const auto& dO = g.tensor(kGradOut, io, dims_of(grad_out), strides_of(grad_out));
  const auto& stats = g.tensor(kStats, f32, rows, rows_strides);
  const auto& scale = g.scalar(kScale);
  const auto& one = g.scalar(kOne);
  // dot = rowsum(dO ∘ O), kept in a buffer of its own (as cudnn-frontend lays the graph out).
  const auto& dO_O = g.pointwise(CUDNN_POINTWISE_MUL, dO, &O,
                                 g.virtual_tensor(f32, {b, h, sq, d}, {h * sq * d, sq * d, h * d, 1}));
  const auto& row_sum = g.reduction(CUDNN_REDUCE_TENSOR_ADD, dO_O, g.virtual_tensor(f32, rows, rows_strides));
  const auto& dot = g.pointwise(CUDNN_POINTWISE_MUL, row_sum, &one, g.tensor(kRowDot, f32, rows, rows_strides));
  // P from the kept statistics.
  const auto& S = g.matmul(Q, Kt, g.virtual_tensor(f32, scores, scores_strides));
  const auto& scaled = g.pointwise(CUDNN_POINTWISE_MUL, S, &scale, g.virtual_tensor(f32, scores, scores_strides));
  const auto& shifted = g.pointwise(CUDNN_POINTWISE_SUB, scaled, &stats, g.virtual_tensor(f32, scores, scores_strides));
  const auto& P = g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, g.virtual_tensor(f32, scores, scores_strides));
  const auto& Pt = g.reshape(P, g.virtual_tensor(io, scores_t, scores_t_strides));
  g.matmul(Pt, dO, g.tensor(kGradV, io, dims_of(grad_v), strides_of(grad_v)));
  // dS = P ∘ (dO·Vᵀ − dot) · scale.
  const auto& dP = g.matmul(dO, Vt, g.virtual_tensor(f32, scores, scores_strides));
  const auto& centred = g.pointwise(CUDNN_POINTWISE_SUB, dP, &dot, g.virtual_tensor(f32, scores, scores_strides));
  const auto& dS_unscaled =
      g.pointwise(CUDNN_POINTWISE_MUL, centred, &P, g.virtual_tensor(f32, scores, scores_strides));
  const auto& dS = g.pointwise(CUDNN_POINTWISE_MUL, dS_unscaled, &scale, g.virtual_tensor(f32, scores, scores_strides));
  const auto& dSt = g.reshape(dS, g.virtual_tensor(io, scores_t, scores_t_strides));
  g.matmul(dSt, Q, g.tensor(kGradK, io, dims_of(grad_k), strides_of(grad_k)));
  const auto& K = g.reshape(Kt, g.virtual_tensor(io, dims_of(k), strides_of(k)));
  const auto& dQ = g.tensor(kGradQ, io, dims_of(grad_q), strides_of(grad_q));
  if (deterministic) {
    g.matmul(dS, K, dQ);
  } else {
    const Dims accumulator{b, h, sq, d};
    const auto& acc = g.matmul(dS, K, g.tensor(kGradQAccumulator, f32, accumulator, contiguous_strides(accumulator)));
    g.pointwise(CUDNN_POINTWISE_IDENTITY, acc, nullptr, dQ);
  }
  return g.build(handle);
}

// One cuDNN handle per device, created on first use after the runtime version check; kept for
// the process (as the cuBLAS handles are).
cudnnHandle_t cudnn_handle(int device) {
  static std::mutex mutex;
  static std::vector<cudnnHandle_t> handles;
  std::lock_guard lock(mutex);
  const auto index = static_cast<size_t>(device);
  if (handles.size() <= index) handles.resize(index + 1, nullptr);
  if (!handles[index]) {
    const size_t runtime = cudnnGetVersion();
    TG_CHECK(runtime >= CUDNN_VERSION, BackendError, "cuDNN runtime ", runtime,
             " is older than the cuDNN headers tapegrad was built with (", CUDNN_VERSION, "): put libcudnn.so.",
             CUDNN_MAJOR, " of version ", CUDNN_MAJOR, ".", CUDNN_MINOR, " or newer first on LD_LIBRARY_PATH");
    TG_CUDNN_CHECK(cudnnCreate(&handles[index]));
  }
  return handles[index];
}

// What identifies a plan: device, direction and every dim and stride of the tensors involved.
struct PlanKey {
  int device;
  bool backward;
  std::vector<int64_t> geometry;
  bool operator==(const PlanKey&) const = default;
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& key) const {
    size_t hash = std::hash<int>{}(key.device) ^ (static_cast<size_t>(key.backward) << 20);
    for (int64_t v : key.geometry) hash = hash * 1000003u ^ std::hash<int64_t>{}(v);
    return hash;
  }
};

PlanKey plan_key(bool backward, std::initializer_list<const Tensor*> tensors) {
  PlanKey key{(*tensors.begin())->device().index, backward, {}};
  for (const Tensor* t : tensors)
    for (int i = 0; i < 4; ++i) {
      key.geometry.push_back(t->size(i));
      key.geometry.push_back(t->stride(i));
    }
  return key;
}

// bf16 4-d tensors whose data and strides keep the 16-byte alignment the descriptors declare.
bool eligible(std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t->dtype() != DType::bf16 || t->dim() != 4 || t->stride(3) != 1) return false;
    if (reinterpret_cast<uintptr_t>(t->raw_data()) % 16 != 0) return false;
    for (int i = 0; i < 3; ++i)
      if (t->size(i) > 1 && t->stride(i) % 8 != 0) return false;
  }
  return true;
}

struct CacheEntry {
  std::unique_ptr<Plan> plan;
  std::string refusal;  // cuDNN's reason when no plan could be built
};

// The cached plan for `key`, built by `build` on first use; null when cuDNN refused (under
// backend cudnn that throws instead; under automatic the first refusal is reported once).
template <class Build>
const Plan* cached_plan(const PlanKey& key, const char* what, Build&& build) {
  static std::mutex mutex;
  static std::unordered_map<PlanKey, CacheEntry, PlanKeyHash> cache;
  static bool reported = false;
  std::lock_guard lock(mutex);
  auto it = cache.find(key);
  if (it == cache.end()) {
    CacheEntry entry;
    try {
      entry.plan = build();
    } catch (const BackendError& e) {
      entry.refusal = e.what();
    }
    it = cache.emplace(key, std::move(entry)).first;
  }
  if (it->second.plan) return it->second.plan.get();
  TG_CHECK(cuda_attention_backend() != CudaAttentionBackend::cudnn, BackendError, "cuDNN fused attention (", what,
           ") is unavailable for these shapes: ", it->second.refusal);
  if (!reported) {
    reported = true;
    std::fprintf(stderr, "tapegrad: cuDNN fused attention (%s) unavailable, using tapegrad's kernels: %s\n", what,
                 it->second.refusal.c_str());
  }
  return nullptr;
}

// Runs the plan on the current stream; uids[i] is the graph tensor at pointers[i].
void execute(int device, const Plan& plan, const std::vector<int64_t>& uids, const std::vector<void*>& pointers) {
  TG_INTERNAL_ASSERT(uids.size() == pointers.size());
  const auto n = static_cast<int64_t>(uids.size());
  const cudnnHandle_t handle = cudnn_handle(device);
  TG_CUDNN_CHECK(cudnnSetStream(handle, current_stream()));
  const Tensor workspace = empty({std::max<int64_t>(plan.workspace_bytes, 1)}, DType::u8, Device::cuda(device));
  void* workspace_data = workspace.raw_data();
  Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, uids.data(), n)
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, pointers.data(), n)
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, &workspace_data)
      .finalize();
  TG_CUDNN_CHECK(cudnnBackendExecute(handle, plan.plan->raw(), pack.raw()));
}

bool wanted(std::initializer_list<const Tensor*> tensors) {
  return cuda_attention_backend() != CudaAttentionBackend::tapegrad && eligible(tensors);
}

}  // namespace

bool cudnn_attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                             double scale) {
  if (!wanted({&out, &q, &k, &v})) return false;
  const int device = q.device().index;
  DeviceGuard guard(device);
  const Plan* plan = cached_plan(plan_key(false, {&out, &q, &k, &v}), "forward",
                                 [&] { return build_forward(cudnn_handle(device), out, q, k, v); });
  if (!plan) return false;
  float scale_value = static_cast<float>(scale);
  execute(device, *plan, {kQ, kK, kV, kO, kStats, kScale},
             {q.raw_data(), k.raw_data(), v.raw_data(), out.raw_data(), lse.raw_data(), &scale_value});
  return true;
}

bool cudnn_attention_backward(const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v,
                              const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& out, const Tensor& lse, double scale) {
  if (!wanted({&grad_q, &grad_k, &grad_v, &grad_out, &q, &k, &v, &out})) return false;
  const int device = q.device().index;
  DeviceGuard guard(device);
  const Plan* plan = cached_plan(
      plan_key(true, {&grad_q, &grad_k, &grad_v, &grad_out, &q, &k, &v, &out}), "backward", [&] {
        const cudnnHandle_t handle = cudnn_handle(device);
        try {
          return build_backward(handle, grad_q, grad_k, grad_v, grad_out, q, k, v, out, true);
        } catch (const BackendError& deterministic) {
          auto plan = build_backward(handle, grad_q, grad_k, grad_v, grad_out, q, k, v, out, false);
          plan->accumulates_grad_q = true;
          std::fprintf(stderr,
                       "tapegrad: cuDNN's deterministic attention backward is unavailable (%s); its accumulating "
                       "backward runs instead, so reruns may differ in the last bits\n",
                       deterministic.what());
          return plan;
        }
      });
  if (!plan) return false;
  const Tensor row_dot = empty({q.size(0), q.size(1), q.size(2)}, DType::f32, q.device());
  float scale_value = static_cast<float>(scale), one = 1.0f;
  std::vector<int64_t> uids{kQ, kK, kV, kO, kGradOut, kStats, kScale, kOne, kRowDot, kGradQ, kGradK, kGradV};
  std::vector<void*> pointers{q.raw_data(),   k.raw_data(),        v.raw_data(),      out.raw_data(),
                              grad_out.raw_data(), lse.raw_data(), &scale_value,      &one,
                              row_dot.raw_data(),  grad_q.raw_data(), grad_k.raw_data(), grad_v.raw_data()};
  Tensor accumulator;  // [b, h, sq, d] f32, only for the accumulating variant
  if (plan->accumulates_grad_q) {
    accumulator = empty(q.shape(), DType::f32, q.device());
    uids.push_back(kGradQAccumulator);
    pointers.push_back(accumulator.raw_data());
  }
  execute(device, *plan, uids, pointers);
  return true;
}

}  // namespace tg::cuda

#else  // no cuDNN in this build: tapegrad's kernels run everything

namespace tg::cuda {

bool cudnn_attention_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double) {
  TG_CHECK(cuda_attention_backend() != CudaAttentionBackend::cudnn, BackendError,
           "cuDNN fused attention: this build has no cuDNN (configure with -DTAPEGRAD_CUDNN=ON)");
  return false;
}

bool cudnn_attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, const Tensor&, const Tensor&, double) {
  TG_CHECK(cuda_attention_backend() != CudaAttentionBackend::cudnn, BackendError,
           "cuDNN fused attention: this build has no cuDNN (configure with -DTAPEGRAD_CUDNN=ON)");
  return false;
}

}  // namespace tg::cuda

#endif
