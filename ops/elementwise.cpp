// Elementwise ops: forward dispatch and the backward nodes (side by side).
#include "ops/elementwise.h"

#include "autograd/engine.h"
#include "ops/dispatch.h"
#include "ops/elementwise_kernels.h"
#include "ops/reduce.h"
#include "ops/shape_ops.h"

namespace tg {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const int64_t n = std::max(a.ndim(), b.ndim());
  Shape out(std::vector<int64_t>(static_cast<size_t>(n), 1));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.ndim() ? 1 : a[i - (n - a.ndim())];
    const int64_t db = i < n - b.ndim() ? 1 : b[i - (n - b.ndim())];
    TG_CHECK(da == db || da == 1 || db == 1, ShapeError, op, ": shapes ", a.str(), " and ", b.str(),
             " cannot broadcast (dim ", i - n, " has sizes ", da, " and ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
  }
  return "binary";
}

Tensor binary_forward(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_same_device_dtype(name, a, {&b});
  TG_CHECK(is_floating(a.dtype()), TypeError, name, ": expected a floating dtype, got ", dtype_name(a.dtype()));
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty(shape, a.dtype(), a.device());
  TG_DEVICE_DISPATCH(a.device(), binary, op, out, a.raw_expand(shape), b.raw_expand(shape));
  return out;
}

class BinaryBackward final : public Node {
 public:
  BinaryBackward(BinaryOp op, const Tensor& a, const Tensor& b)
      : Node(std::string(binary_name(op)) + "Backward"), op_(op) {
    // add/sub need no operands; mul needs the other operand; div needs b (and a for db).
    if (op == BinaryOp::mul || op == BinaryOp::div) {
      a_slot_ = save(a);
      b_slot_ = save(b);
    }
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const Tensor& g = grads[0];
    const Shape& a_shape = input_metas()[0].shape;
    const Shape& b_shape = input_metas()[1].shape;
    Tensor ga, gb;
    switch (op_) {
      case BinaryOp::add:
        if (needs_input_grad(0)) ga = sum_to(g, a_shape);
        if (needs_input_grad(1)) gb = sum_to(g, b_shape);
        break;
      case BinaryOp::sub:
        if (needs_input_grad(0)) ga = sum_to(g, a_shape);
        if (needs_input_grad(1)) gb = neg(sum_to(g, b_shape));
        break;
      case BinaryOp::mul:
        if (needs_input_grad(0)) ga = sum_to(binary_forward(BinaryOp::mul, g, saved(b_slot_)), a_shape);
        if (needs_input_grad(1)) gb = sum_to(binary_forward(BinaryOp::mul, g, saved(a_slot_)), b_shape);
        break;
      case BinaryOp::div: {
        const Tensor g_over_b = binary_forward(BinaryOp::div, g, saved(b_slot_));
        if (needs_input_grad(1)) {
          // d(a/b)/db = -(a/b)/b: reuse g/b once more.
          const Tensor t = binary_forward(BinaryOp::mul, g_over_b, saved(a_slot_));
          gb = neg(sum_to(binary_forward(BinaryOp::div, t, saved(b_slot_)), b_shape));
        }
        if (needs_input_grad(0)) ga = sum_to(g_over_b, a_shape);
        break;
      }
    }
    return {ga, gb};
  }

 private:
  BinaryOp op_;
  size_t a_slot_ = 0, b_slot_ = 0;
};

Tensor binary_op(BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(op, a, b);
  if (should_record({&a, &b})) record(std::make_shared<BinaryBackward>(op, a, b), {a, b}, {out});
  return out;
}

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::affine: return "affine";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::tanh: return "tanh";
    case UnaryOp::relu: return "relu";
    case UnaryOp::gelu_erf:
    case UnaryOp::gelu_tanh: return "gelu";
  }
  return "unary";
}

Tensor unary_forward(UnaryOp op, const Tensor& x, double p0, double p1) {
  TG_CHECK(is_floating(x.dtype()), TypeError, unary_name(op), ": expected a floating dtype, got ",
           dtype_name(x.dtype()));
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  TG_DEVICE_DISPATCH(x.device(), unary, op, out, x, p0, p1);
  return out;
}

class UnaryBackward final : public Node {
 public:
  UnaryBackward(UnaryOp op, const Tensor& x, const Tensor& y, double p0)
      : Node(std::string(unary_name(op)) + "Backward"), op_(op), p0_(p0) {
    if (op != UnaryOp::affine) save(unary_backward_uses_input(op) ? x : y);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const Tensor& g = grads[0];
    Tensor gx = empty(g.shape(), g.dtype(), g.device());
    TG_DEVICE_DISPATCH(g.device(), unary_backward, op_, gx, g, op_ == UnaryOp::affine ? g : saved(0), p0_);
    return {gx};
  }

 private:
  UnaryOp op_;
  double p0_;
};

class AddConvertedBackward final : public Node {
 public:
  AddConvertedBackward() : Node("AddConvertedBackward") {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const Tensor& g = grads[0];
    Tensor ga, gb;
    if (needs_input_grad(0)) ga = g;
    if (needs_input_grad(1)) gb = g.to(input_metas()[1].dtype);
    return {ga, gb};
  }
};

Tensor unary_op(UnaryOp op, const Tensor& x, double p0 = 0, double p1 = 0) {
  Tensor out = unary_forward(op, x, p0, p1);
  if (should_record({&x})) record(std::make_shared<UnaryBackward>(op, x, out, p0), {x}, {out});
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::add, a, b); }
Tensor add_converted(const Tensor& a, const Tensor& b) {
  TG_CHECK(is_floating(a.dtype()) && is_floating(b.dtype()), TypeError, "add: expected floating dtypes, got ",
           dtype_name(a.dtype()), " and ", dtype_name(b.dtype()));
  if (a.dtype() == b.dtype() || a.shape() != b.shape()) return add(a, cast(b, a.dtype()));
  TG_CHECK(a.device() == b.device(), TypeError, "add: expected all tensors on ", a.device().str(), ", got one on ",
           b.device().str());
  Tensor out = empty(a.shape(), a.dtype(), a.device());
  TG_DEVICE_DISPATCH(a.device(), add_converted, out, a.raw_contiguous(), b.raw_contiguous());
  if (should_record({&a, &b})) record(std::make_shared<AddConvertedBackward>(), {a, b}, {out});
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::div, a, b); }
Tensor affine(const Tensor& x, double scale, double shift) { return unary_op(UnaryOp::affine, x, scale, shift); }
Tensor exp(const Tensor& x) { return unary_op(UnaryOp::exp, x); }
Tensor log(const Tensor& x) { return unary_op(UnaryOp::log, x); }
Tensor sqrt(const Tensor& x) { return unary_op(UnaryOp::sqrt, x); }
Tensor tanh(const Tensor& x) { return unary_op(UnaryOp::tanh, x); }
Tensor relu(const Tensor& x) { return unary_op(UnaryOp::relu, x); }
Tensor gelu(const Tensor& x, GeluApproximation approximation) {
  return unary_op(approximation == GeluApproximation::none ? UnaryOp::gelu_erf : UnaryOp::gelu_tanh, x);
}

}  // namespace tg
