// gemm_attention: scaled-dot-product attention from batched GEMMs and the softmax kernels, which
// keeps Q·scale, K and V and recomputes the probabilities in backward, a chunk of (batch, head)
// matrices at a time, with the same kernels as its forward (so bit for bit the same P). On CUDA
// the GEMMs are cuBLAS's (TF32 tensor cores when the precision policy allows): the f32 fused
// attention there (ops/attention.h, docs/attention.md). K and V are kept with zero padding keys,
// so that rows of scores are whole 16-byte words (padded_keys).
#include <algorithm>
#include <limits>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "ops/attention.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/matmul/gemm.h"
#include "ops/precision.h"
#include "ops/softmax_kernels.h"

namespace tg {

namespace {

// [B, H, T, D] as the contiguous batch of its B·H matrices [B·H, T, D].
Tensor as_matrices(const Tensor& x) {
  return x.raw_contiguous().raw_view({x.size(0) * x.size(1), x.size(2), x.size(3)});
}

// Keys per matrix, rounded up so that a row of scores or probabilities fills whole 16-byte words.
// cuBLAS reads an operand whose rows start off 16-byte boundaries with scalar loads (its align1
// kernels): with 65 or 197 tokens that made the attention's GEMMs 2–4× slower on the H200
// (docs/results.md, device call 14).
int64_t padded_keys(int64_t tk, size_t itemsize) {
  const auto per_word = std::max<int64_t>(16 / static_cast<int64_t>(itemsize), 1);
  return (tk + per_word - 1) / per_word * per_word;
}

// k or v [B, H, Tk, D] as [B·H, tkp, D] matrices whose rows past Tk are zero: padding keys that
// add nothing to P·V, nor to dQ = dS·K (their dS is zero).
Tensor padded_matrices(const Tensor& x, int64_t tkp) {
  const int64_t tk = x.size(2);
  if (tkp == tk) return as_matrices(x);
  const Tensor padded = empty({x.size(0), x.size(1), tkp, x.size(3)}, x.dtype(), x.device());
  padded.raw_narrow(2, 0, tk).copy_(x);
  padded.raw_narrow(2, tk, tkp - tk).fill_(0);
  return padded.raw_view({x.size(0) * x.size(1), tkp, x.size(3)});
}

// The scores' bias [tkp]: 0 for the Tk keys, -inf for the padding keys, whose probabilities are
// then exactly 0 (the row's max and sum are those of the real keys). Undefined without padding.
Tensor key_mask(int64_t tk, int64_t tkp, DType dtype, Device device) {
  if (tkp == tk) return Tensor();
  const Tensor mask = zeros({tkp}, dtype, device);
  mask.raw_narrow(0, tk, tkp - tk).fill_(-std::numeric_limits<double>::infinity());
  return mask;
}

// The (batch, head) matrices [first, first + count) of one chunk.
struct Chunk {
  int64_t first, count;
};

// Chunks of matrices whose [count, Tq, Tk] score tensors stay within `budget_bytes` (one matrix
// at least): the transients of a chunk are a few such tensors, whatever the batch.
std::vector<Chunk> chunks(int64_t matrices, int64_t tq, int64_t tk, size_t itemsize, int64_t budget_bytes) {
  const int64_t per_matrix = std::max<int64_t>(tq * tk * static_cast<int64_t>(itemsize), 1);
  const int64_t size = std::clamp<int64_t>(budget_bytes / per_matrix, 1, std::max<int64_t>(matrices, 1));
  std::vector<Chunk> out;
  for (int64_t first = 0; first < matrices; first += size) out.push_back({first, std::min(size, matrices - first)});
  return out;
}

// P = softmax(Qs·Kᵀ + mask) [count, Tq, tkp] of one chunk; Qs is Q·scale.
Tensor probabilities(const Tensor& qs, const Tensor& k, const Tensor& mask) {
  const Tensor scores = gemm(qs, false, k, true, mask);
  Tensor p = empty(scores.shape(), scores.dtype(), scores.device());
  TG_DEVICE_DISPATCH(p.device(), softmax, p, scores, scores.size(-1), /*log=*/false);
  return p;
}

// op(a)·op(b) of one chunk into its rows of `whole` ([matrices, M, N], contiguous).
void product_into(const Tensor& whole, const Chunk& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b) {
  gemm_into(whole.raw_narrow(0, c.first, c.count), a, trans_a, b, trans_b);
}

class GemmAttentionBackward final : public Node {
 public:
  GemmAttentionBackward(const Tensor& qs, const Tensor& k, const Tensor& v, const Shape& q_shape, const Shape& kv_shape,
                        double scale, int64_t chunk_bytes)
      : Node("GemmAttentionBackward"), q_shape_(q_shape), kv_shape_(kv_shape), scale_(scale), chunk_bytes_(chunk_bytes) {
    save(qs);
    save(k);
    save(v);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const PrecisionGuard precision(policy_);  // the GEMMs compute as forward's did
    const Tensor &qs = saved(0), &k = saved(1), &v = saved(2);
    if (qs.numel() == 0) return {empty(q_shape_, qs.dtype(), qs.device()), zeros(kv_shape_, k.dtype(), k.device()),
                                 zeros(kv_shape_, v.dtype(), v.device())};  // no queries: K and V had no effect
    const Tensor g = as_matrices(grads[0]);  // dO [B·H, Tq, D]
    const Tensor dqs = empty(qs.shape(), qs.dtype(), qs.device()), dk = empty(k.shape(), k.dtype(), k.device()),
                 dv = empty(v.shape(), v.dtype(), v.device());
    const Tensor mask = key_mask(kv_shape_[2], k.size(1), k.dtype(), k.device());
    for (const Chunk& c : chunks(qs.size(0), qs.size(1), k.size(1), qs.itemsize(), chunk_bytes_)) {
      const Tensor qs_c = qs.raw_narrow(0, c.first, c.count), k_c = k.raw_narrow(0, c.first, c.count),
                   v_c = v.raw_narrow(0, c.first, c.count), g_c = g.raw_narrow(0, c.first, c.count);
      const Tensor p = probabilities(qs_c, k_c, mask);
      product_into(dv, c, p, true, g_c, false);        // dV = Pᵀ·dO
      const Tensor dp = gemm(g_c, false, v_c, true);   // dP = dO·Vᵀ
      Tensor ds = empty(dp.shape(), dp.dtype(), dp.device());  // dS = P∘(dP − rowsum(P∘dP))
      TG_DEVICE_DISPATCH(ds.device(), softmax_backward, ds, dp, p, p.size(-1), /*log=*/false);
      product_into(dqs, c, ds, false, k_c, false);     // d(Q·scale) = dS·K
      product_into(dk, c, ds, true, qs_c, false);      // dK = dSᵀ·(Q·scale)
    }
    // The padding keys' rows of dK and dV (zero) stay behind: the gradients are views of the rest.
    auto real_keys = [&](const Tensor& padded) {
      return padded.raw_view({kv_shape_[0], kv_shape_[1], padded.size(1), kv_shape_[3]}).raw_narrow(2, 0, kv_shape_[2]);
    };
    return {mul(dqs, scale_).raw_view(q_shape_), real_keys(dk), real_keys(dv)};
  }

 private:
  PrecisionPolicy policy_ = precision_policy();
  Shape q_shape_, kv_shape_;
  double scale_;
  int64_t chunk_bytes_;
};

}  // namespace

Tensor gemm_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, int64_t chunk_bytes) {
  check_attention_inputs("gemm_attention", q, k, v);
  TG_CHECK(chunk_bytes > 0, ValueError, "gemm_attention: expected a positive chunk budget, got ", chunk_bytes);
  const Tensor out = empty(q.shape(), q.dtype(), q.device());
  Tensor qs, kc, vc;
  {
    NoGradGuard no_grad;  // this op records its own node
    const int64_t tkp = padded_keys(k.size(2), k.itemsize());
    qs = as_matrices(mul(q, scale));
    kc = padded_matrices(k, tkp);
    vc = padded_matrices(v, tkp);
    const Tensor mask = key_mask(k.size(2), tkp, k.dtype(), k.device());
    const Tensor out_matrices = out.raw_view(qs.shape());
    const int64_t matrices = q.numel() == 0 ? 0 : qs.size(0);
    for (const Chunk& c : chunks(matrices, qs.size(1), kc.size(1), qs.itemsize(), chunk_bytes)) {
      const Tensor p =
          probabilities(qs.raw_narrow(0, c.first, c.count), kc.raw_narrow(0, c.first, c.count), mask);
      product_into(out_matrices, c, p, false, vc.raw_narrow(0, c.first, c.count), false);  // O = P·V
    }
  }
  if (should_record({&q, &k, &v}))
    record(std::make_shared<GemmAttentionBackward>(qs, kc, vc, q.shape(), k.shape(), scale, chunk_bytes), {q, k, v},
           {out});
  return out;
}

}  // namespace tg
