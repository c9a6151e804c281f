// scaled_dot_product_attention: checks, the forward dispatch and the backward node, which keeps
// q, k, v, out and the row log-sum-exp (never the probabilities).
#include "ops/attention.h"

#include <array>
#include <atomic>

#include "autograd/engine.h"
#include "ops/attention_kernels.h"
#include "ops/dispatch.h"
#include "ops/precision.h"

namespace tg {

namespace {

// x with a contiguous last dim (the kernels' only layout requirement).
Tensor last_dim_contiguous(const Tensor& x) { return x.stride(-1) == 1 ? x : x.raw_contiguous(); }

// A [B, H, T, D] tensor laid out as [B, T, H, D] in memory.
Tensor empty_heads_inner(const Shape& bhtd, DType dtype, Device device) {
  return empty({bhtd[0], bhtd[2], bhtd[1], bhtd[3]}, dtype, device).raw_permute({0, 2, 1, 3});
}

// Where backward writes dQ, dK, dV. When q, k, v are the heads of one [B, T, 3, H, D] buffer (a
// qkv projection unbound along dim 2 and permuted to [B, H, T, D], as nn::Attention makes them),
// slices of one buffer in that layout, so that the unbind's backward finds its gradient already
// gathered (ops/shape_ops.cpp) instead of copying three parts together; else three [B, T, H, D]
// buffers.
std::array<Tensor, 3> gradient_buffers(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), d = q.size(3);
  const Strides heads_of_qkv{t * 3 * h * d, d, 3 * h * d, 1};
  const bool from_one_qkv = q.shares_storage(k) && k.shares_storage(v) && q.shape() == k.shape() && k.shape() == v.shape() && q.strides() == heads_of_qkv &&
                            k.strides() == heads_of_qkv && v.strides() == heads_of_qkv &&
                            k.offset() - q.offset() == h * d && v.offset() - q.offset() == 2 * h * d;
  if (from_one_qkv) {
    const Tensor qkv = empty({b, t, 3, h, d}, q.dtype(), q.device());
    auto head = [&](int64_t i) { return qkv.raw_select(2, i).raw_permute({0, 2, 1, 3}); };
    return {head(0), head(1), head(2)};
  }
  return {empty_heads_inner(q.shape(), q.dtype(), q.device()), empty_heads_inner(k.shape(), k.dtype(), k.device()),
          empty_heads_inner(v.shape(), v.dtype(), v.device())};
}

class AttentionBackward final : public Node {
 public:
  AttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, double scale,
                    bool allow_tf32)
      : Node("AttentionBackward"), scale_(scale), allow_tf32_(allow_tf32) {
    save(q);
    save(k);
    save(v);
    save(out);
    save(lse);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const Tensor &q = saved(0), &k = saved(1), &v = saved(2), &out = saved(3), &lse = saved(4);
    auto [gq, gk, gv] = gradient_buffers(q, k, v);
    if (q.numel() > 0)
      TG_DEVICE_DISPATCH(q.device(), attention_backward, gq, gk, gv, last_dim_contiguous(grads[0]), q, k, v, out, lse,
                         scale_, allow_tf32_);
    return {gq, gk, gv};
  }

 private:
  double scale_;
  bool allow_tf32_;  // the policy's when forward ran: backward computes as forward did
};

std::atomic<CudaAttentionBackend> g_cuda_attention_backend{CudaAttentionBackend::automatic};

}  // namespace

void set_cuda_attention_backend(CudaAttentionBackend backend) { g_cuda_attention_backend.store(backend); }

CudaAttentionBackend cuda_attention_backend() { return g_cuda_attention_backend.load(); }

CudaAttentionBackend parse_cuda_attention_backend(const std::string& name) {
  if (name == "auto") return CudaAttentionBackend::automatic;
  if (name == "cudnn") return CudaAttentionBackend::cudnn;
  if (name == "tapegrad") return CudaAttentionBackend::tapegrad;
  TG_THROW(ValueError, "--attention-backend: unknown value '", name, "' (expected auto, cudnn, tapegrad)");
}

void check_attention_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  check_same_device_dtype(op, q, {&k, &v});
  TG_CHECK(is_floating(q.dtype()), TypeError, op, ": expected a floating dtype, got ", dtype_name(q.dtype()));
  TG_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, ShapeError, op, ": expected q, k, v [B, H, T, D], got ",
           q.shape().str(), ", ", k.shape().str(), ", ", v.shape().str());
  TG_CHECK(k.shape() == v.shape() && q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3),
           ShapeError, op, ": expected q [B, H, Tq, D] and k, v [B, H, Tk, D], got ", q.shape().str(), ", ",
           k.shape().str(), ", ", v.shape().str());
  TG_CHECK(k.size(2) > 0, ShapeError, op, ": k and v have no tokens (shape ", k.shape().str(), ")");
}

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, double scale) {
  check_attention_inputs("scaled_dot_product_attention", q_in, k_in, v_in);
  // f32 (and f64) on CUDA: cuBLAS's GEMMs with the probabilities recomputed in backward, unless
  // tapegrad's own tiled kernels are asked for (docs/attention.md says why).
  if (q_in.device().is_cuda() && q_in.dtype() != DType::bf16 &&
      cuda_attention_backend() != CudaAttentionBackend::tapegrad)
    return gemm_attention(q_in, k_in, v_in, scale);
  const Tensor q = last_dim_contiguous(q_in), k = last_dim_contiguous(k_in), v = last_dim_contiguous(v_in);
  Tensor out = empty_heads_inner(q.shape(), q.dtype(), q.device());
  // f64 inputs keep an f64 log-sum-exp, so that gradcheck sees f64 precision.
  Tensor lse = empty({q.size(0), q.size(1), q.size(2)}, q.dtype() == DType::f64 ? DType::f64 : DType::f32, q.device());
  const bool allow_tf32 = precision_policy().allow_tf32;
  if (q.numel() > 0) TG_DEVICE_DISPATCH(q.device(), attention_forward, out, lse, q, k, v, scale, allow_tf32);
  if (should_record({&q_in, &k_in, &v_in}))
    record(std::make_shared<AttentionBackward>(q, k, v, out, lse, scale, allow_tf32), {q_in, k_in, v_in}, {out});
  return out;
}

}  // namespace tg
