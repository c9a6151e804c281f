// matmul: shape checks, the device-generic GEMM (operands arranged for BLAS) and the backward
// node, whose operand gradients are contractions of a BackwardStrategy.
#include "ops/matmul.h"

#include <atomic>

#include "autograd/engine.h"
#include "ops/dispatch.h"
#include "ops/matmul_kernels.h"

namespace tg {

namespace {

std::atomic<bool> tf32_allowed{false};

struct MatmulShape {
  Shape batch_dims;  // the leading dims shared by a, b and the result
  int64_t batch, m, k, n;
};

Shape leading_dims(const Tensor& x) {
  return Shape(std::vector<int64_t>(x.shape().begin(), x.shape().end() - 2));
}

MatmulShape check_matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  check_same_device_dtype("matmul", a, {&b});
  TG_CHECK(is_floating(a.dtype()), TypeError, "matmul: expected a floating dtype, got ", dtype_name(a.dtype()));
  TG_CHECK(a.dim() >= 2, ShapeError, "matmul: a must have at least 2 dims ([..., M, K]), got shape ", a.shape().str());
  TG_CHECK(b.dim() >= 2, ShapeError, "matmul: b must have at least 2 dims ([..., K, N]), got shape ", b.shape().str());
  const int64_t ka = trans_a ? a.size(-2) : a.size(-1);
  const int64_t kb = trans_b ? b.size(-1) : b.size(-2);
  TG_CHECK(ka == kb, ShapeError, "matmul: inner dimensions differ: a is ", a.shape().str(), " (",
           trans_a ? "transposed, " : "", "K = ", ka, "), b is ", b.shape().str(), " (", trans_b ? "transposed, " : "",
           "K = ", kb, ")");
  MatmulShape s{leading_dims(a), 1, trans_a ? a.size(-1) : a.size(-2), ka, trans_b ? b.size(-2) : b.size(-1)};
  const Shape b_batch = leading_dims(b);
  TG_CHECK(s.batch_dims == b_batch, ShapeError, "matmul: batch dims differ: a is ", a.shape().str(), " (batch ",
           s.batch_dims.str(), "), b is ", b.shape().str(), " (batch ", b_batch.str(),
           "); they must be identical (no broadcasting)");
  s.batch = s.batch_dims.numel();
  return s;
}

// A GEMM operand: [batch, rows, cols] with unit-stride rows, used as op(matrix).
struct GemmOperand {
  Tensor matrix;
  bool trans;
};

// `x` [..., r, c] as a GEMM operand. Rows that are unit-stride are read in place; a transposed
// view of such a matrix is passed as that matrix with `trans` flipped. Only other layouts, and
// batch dims that do not flatten to one stride, are copied.
GemmOperand gemm_operand(const Tensor& x, bool trans, int64_t batch) {
  const int64_t r = x.size(-2), c = x.size(-1);
  const Tensor x3 = x.reshape({batch, r, c});
  const int64_t sb = x3.stride(0), sr = x3.stride(1), sc = x3.stride(2);
  // The stride of a size-1 dim is arbitrary: BLAS only needs it to be at least the row length.
  if ((c == 1 || sc == 1) && (r == 1 || sr >= c))
    return {x3.as_strided({batch, r, c}, {sb, r == 1 ? c : sr, 1}, x3.offset()), trans};
  if ((r == 1 || sr == 1) && (c == 1 || sc >= r))
    return {x3.as_strided({batch, c, r}, {sb, c == 1 ? r : sc, 1}, x3.offset()), !trans};
  return {x3.contiguous(), trans};
}

// Operand gradients of R = op(a)·op(b), each a contraction over one dim (strategy.h):
//   dA = dR·Bᵀ : over n, X = Bᵀ [batch, N, K], G = dRᵀ  -> [batch, M, K]
//   dB = Aᵀ·dR : over m, X = A  [batch, M, K], G = dR   -> [batch, N, K] = dBᵀ
class MatmulBackward final : public Node {
 public:
  MatmulBackward(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, int64_t batch,
                 BackwardStrategy* for_grad_a, BackwardStrategy* for_grad_b)
      : Node("MatmulBackward"), trans_a_(trans_a), trans_b_(trans_b), batch_(batch) {
    if (a.requires_grad()) saved_bt_ = (for_grad_a ? *for_grad_a : exact_).save(batched(trans_b ? b : b.transpose(-2, -1)));
    if (b.requires_grad()) saved_a_ = (for_grad_b ? *for_grad_b : exact_).save(batched(trans_a ? a.transpose(-2, -1) : a));
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    check_not_released();
    const Tensor g = batched(grads[0]);  // dR [batch, M, N]
    Tensor ga, gb;
    if (needs_input_grad(0)) {
      TG_INTERNAL_ASSERT(saved_bt_, "MatmulBackward: B was not saved");
      const Tensor da = saved_bt_->contract(g.transpose(1, 2));
      ga = (trans_a_ ? da.transpose(1, 2) : da).reshape(input_metas()[0].shape);
    }
    if (needs_input_grad(1)) {
      TG_INTERNAL_ASSERT(saved_a_, "MatmulBackward: A was not saved");
      const Tensor db_t = saved_a_->contract(g);
      gb = (trans_b_ ? db_t : db_t.transpose(1, 2)).reshape(input_metas()[1].shape);
    }
    return {ga, gb};
  }

  size_t saved_bytes() const override {
    return (saved_a_ ? saved_a_->saved_bytes() : 0) + (saved_bt_ ? saved_bt_->saved_bytes() : 0);
  }

  void release_saved() override {
    saved_a_.reset();
    saved_bt_.reset();
    Node::release_saved();
  }

 private:
  Tensor batched(const Tensor& x) const { return x.reshape({batch_, x.size(-2), x.size(-1)}); }

  bool trans_a_, trans_b_;
  int64_t batch_;
  ExactStrategy exact_;  // the strategy when the caller gives none
  std::unique_ptr<SavedOperand> saved_a_, saved_bt_;
};

}  // namespace

Tensor gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias) {
  const MatmulShape s = check_matmul(a, b, trans_a, trans_b);
  if (bias.defined()) {
    check_same_device_dtype("matmul", a, {&bias});
    TG_CHECK(bias.dim() == 1 && bias.size(0) == s.n, ShapeError, "matmul: bias must have shape [", s.n,
             "] (N), got ", bias.shape().str());
  }
  Shape out_shape = s.batch_dims;
  out_shape.dims().insert(out_shape.dims().end(), {s.m, s.n});
  Tensor out = empty(out_shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  const Tensor c = out.view({s.batch, s.m, s.n});
  if (s.k == 0) {  // an empty sum
    if (bias.defined()) c.copy_(bias.expand(c.shape()));
    else c.fill_(0);
    return out;
  }
  const GemmOperand ga = gemm_operand(a, trans_a, s.batch), gb = gemm_operand(b, trans_b, s.batch);
  if (bias.defined())
    TG_DEVICE_DISPATCH(a.device(), gemm_bias, c, ga.matrix, ga.trans, gb.matrix, gb.trans, bias.contiguous());
  else
    TG_DEVICE_DISPATCH(a.device(), gemm, c, ga.matrix, ga.trans, gb.matrix, gb.trans, /*accumulate=*/false);
  return out;
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, BackwardStrategy* strategy) {
  return matmul(a, b, trans_a, trans_b, strategy, strategy);
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, BackwardStrategy* for_grad_a,
              BackwardStrategy* for_grad_b) {
  Tensor out = gemm(a, trans_a, b, trans_b);
  if (should_record({&a, &b})) {
    const int64_t batch = leading_dims(a).numel();
    record(std::make_shared<MatmulBackward>(a, b, trans_a, trans_b, batch, for_grad_a, for_grad_b), {a, b}, {out});
  }
  return out;
}

void set_allow_tf32(bool allow) { tf32_allowed = allow; }
bool allow_tf32() { return tf32_allowed; }

}  // namespace tg
