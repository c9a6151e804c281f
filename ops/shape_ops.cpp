// Shape and indexing ops: forwards (Tensor's views and copies) and backward nodes side by side.
#include "ops/shape_ops.h"

#include <functional>

#include "autograd/engine.h"
#include "ops/dispatch.h"
#include "ops/index_kernels.h"
#include "ops/reduce.h"

namespace tg {

namespace {

// Backward of a single-input view or copy: `inverse` maps the output gradient to the input
// gradient. It captures only sizes and dims, never tensors, so nothing is saved.
class ShapeBackward final : public Node {
 public:
  using Inverse = std::function<Tensor(const Tensor& grad, const InputMeta& input)>;
  ShapeBackward(const char* op, Inverse inverse) : Node(std::string(op) + "Backward"), inverse_(std::move(inverse)) {}

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override { return {inverse_(grads[0], input_metas()[0])}; }

 private:
  Inverse inverse_;
};

// Records `out` = op(x) when x needs a gradient; the inverse is only built then.
template <class F>
Tensor record_shape_op(const char* op, const Tensor& x, Tensor out, F&& inverse) {
  if (should_record({&x})) record(std::make_shared<ShapeBackward>(op, std::forward<F>(inverse)), {x}, {out});
  return out;
}

// Gradient of a view that picks a part of its input: zeros of the input's shape with the
// gradient copied into the same part (one copy pass).
template <class Part>
Tensor scatter_into_zeros(const Tensor& grad, const Node::InputMeta& input, Part&& part) {
  Tensor grad_x = zeros(input.shape, input.dtype, input.device);
  part(grad_x).copy_(grad);
  return grad_x;
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  return record_shape_op("Reshape", x, x.raw_reshape(shape),
                         [](const Tensor& g, const Node::InputMeta& in) { return g.raw_reshape(in.shape); });
}

// The gradient may be strided (e.g. it came through a transpose), so it is reshaped, not viewed.
Tensor view(const Tensor& x, const Shape& shape) {
  return record_shape_op("View", x, x.raw_view(shape),
                         [](const Tensor& g, const Node::InputMeta& in) { return g.raw_reshape(in.shape); });
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  Shape shape({1});
  if (x.dim() > 0) {
    const int64_t start = wrap_dim(start_dim, x.dim(), "flatten: start_dim");
    const int64_t end = wrap_dim(end_dim, x.dim(), "flatten: end_dim");
    TG_CHECK(start <= end, ValueError, "flatten: expected start_dim <= end_dim, got start_dim ", start,
             " and end_dim ", end, " for shape ", x.shape().str());
    std::vector<int64_t> dims(x.shape().begin(), x.shape().begin() + start);
    int64_t merged = 1;
    for (int64_t d = start; d <= end; ++d) merged *= x.shape()[d];
    dims.push_back(merged);
    dims.insert(dims.end(), x.shape().begin() + end + 1, x.shape().end());
    shape = Shape(std::move(dims));
  }
  return record_shape_op("Flatten", x, x.raw_reshape(shape),
                         [](const Tensor& g, const Node::InputMeta& in) { return g.raw_reshape(in.shape); });
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  Tensor out = x.raw_permute(dims);  // validates dims
  std::vector<int64_t> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[static_cast<size_t>(wrap_dim(dims[i], x.dim()))] = static_cast<int64_t>(i);
  return record_shape_op("Permute", x, std::move(out),
                         [inverse](const Tensor& g, const Node::InputMeta&) { return g.raw_permute(inverse); });
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  return record_shape_op("Transpose", x, x.raw_transpose(dim0, dim1),
                         [dim0, dim1](const Tensor& g, const Node::InputMeta&) { return g.raw_transpose(dim0, dim1); });
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  Tensor out = x.raw_unsqueeze(dim);
  const int64_t d = wrap_dim(dim, out.dim());
  return record_shape_op("Unsqueeze", x, std::move(out),
                         [d](const Tensor& g, const Node::InputMeta&) { return g.raw_squeeze(d); });
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  Tensor out = x.raw_squeeze(dim);
  const int64_t d = wrap_dim(dim, x.dim());
  return record_shape_op("Squeeze", x, std::move(out),
                         [d](const Tensor& g, const Node::InputMeta&) { return g.raw_unsqueeze(d); });
}

Tensor expand(const Tensor& x, const Shape& shape) {
  return record_shape_op("Expand", x, x.raw_expand(shape),
                         [](const Tensor& g, const Node::InputMeta& in) { return sum_to(g, in.shape); });
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;  // the same tensor: there is nothing to record
  return record_shape_op("Contiguous", x, x.raw_contiguous(), [](const Tensor& g, const Node::InputMeta&) { return g; });
}

Tensor cast(const Tensor& x, DType dtype) {
  TG_CHECK(is_floating(x.dtype()) && is_floating(dtype), TypeError, "cast: expected floating dtypes, got ",
           dtype_name(x.dtype()), " to ", dtype_name(dtype));
  if (x.dtype() == dtype) return x;
  return record_shape_op("Cast", x, x.to(dtype), [](const Tensor& g, const Node::InputMeta& in) { return g.to(in.dtype); });
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  // The same arguments pick the same part of a tensor of the input's shape (same clamping).
  return record_shape_op("Slice", x, x.raw_slice(dim, start, end, step), [=](const Tensor& g, const Node::InputMeta& in) {
    return scatter_into_zeros(g, in, [&](const Tensor& t) { return t.raw_slice(dim, start, end, step); });
  });
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  return record_shape_op("Narrow", x, x.raw_narrow(dim, start, length), [=](const Tensor& g, const Node::InputMeta& in) {
    return scatter_into_zeros(g, in, [&](const Tensor& t) { return t.raw_narrow(dim, start, length); });
  });
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  return record_shape_op("Select", x, x.raw_select(dim, index), [=](const Tensor& g, const Node::InputMeta& in) {
    return scatter_into_zeros(g, in, [&](const Tensor& t) { return t.raw_select(dim, index); });
  });
}

namespace {

// Gradient of concat: for each input, the part of the gradient it was copied to (a view).
class ConcatBackward final : public Node {
 public:
  ConcatBackward(int64_t dim, std::vector<int64_t> sizes) : Node("ConcatBackward"), dim_(dim), sizes_(std::move(sizes)) {}

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    std::vector<Tensor> grad_inputs(sizes_.size());
    int64_t start = 0;
    for (size_t i = 0; i < sizes_.size(); ++i) {
      if (needs_input_grad(i)) grad_inputs[i] = grads[0].raw_narrow(dim_, start, sizes_[i]);
      start += sizes_[i];
    }
    return grad_inputs;
  }

 private:
  int64_t dim_;
  std::vector<int64_t> sizes_;
};

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  TG_CHECK(!xs.empty(), ValueError, "concat: expected at least one tensor, got an empty list");
  const Tensor& first = xs[0];
  TG_CHECK(first.dim() > 0, ShapeError, "concat: expected tensors with at least 1 dim, got a 0-d tensor");
  const int64_t d = wrap_dim(dim, first.dim(), "concat: dim");
  Shape shape = first.shape();
  shape[d] = 0;
  std::vector<int64_t> sizes;
  sizes.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    check_same_device_dtype("concat", first, {&x});
    TG_CHECK(x.dim() == first.dim(), ShapeError, "concat: expected input ", i, " to have ", first.dim(),
             " dims like input 0 (shape ", first.shape().str(), "), got shape ", x.shape().str());
    for (int64_t k = 0; k < x.dim(); ++k)
      TG_CHECK(k == d || x.shape()[k] == first.shape()[k], ShapeError, "concat: input ", i, " has shape ",
               x.shape().str(), " but input 0 has shape ", first.shape().str(), " (sizes must match except in dim ",
               d, ")");
    sizes.push_back(x.shape()[d]);
    shape[d] += x.shape()[d];
  }
  Tensor out = empty(shape, first.dtype(), first.device());
  int64_t start = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    out.raw_narrow(d, start, sizes[i]).copy_(xs[i]);
    start += sizes[i];
  }
  if (should_record(xs)) record(std::make_shared<ConcatBackward>(d, std::move(sizes)), xs, {out});
  return out;
}

namespace {

class UnbindBackward final : public Node {
 public:
  explicit UnbindBackward(int64_t dim) : Node("UnbindBackward"), dim_(dim) {}

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const InputMeta& in = input_metas()[0];
    if (Tensor whole = already_gathered(grads, in); whole.defined()) return {whole};
    Tensor grad_x = empty(in.shape, in.dtype, in.device);
    for (size_t i = 0; i < grads.size(); ++i) {
      const Tensor part = grad_x.raw_select(dim_, static_cast<int64_t>(i));
      if (grads[i].defined()) part.copy_(grads[i]);
      else part.fill_(0);
    }
    return {grad_x};
  }

 private:
  // When the parts' gradients are already the slices of one contiguous buffer of x's shape (the
  // fused attention writes dQ, dK, dV so, ops/attention.cpp), that buffer: no copy.
  Tensor already_gathered(const std::vector<Tensor>& grads, const InputMeta& in) const {
    const Strides whole_strides = contiguous_strides(in.shape);
    for (const Tensor& g : grads)
      if (!g.defined() || !g.shares_storage(grads[0]) || g.dtype() != in.dtype) return Tensor();
    const size_t end = static_cast<size_t>(grads[0].offset() + in.shape.numel()) * grads[0].itemsize();
    if (end > grads[0].storage()->nbytes()) return Tensor();
    const Tensor whole = grads[0].as_strided(in.shape, whole_strides, grads[0].offset());
    for (size_t i = 0; i < grads.size(); ++i) {
      const Tensor slice = whole.raw_select(dim_, static_cast<int64_t>(i));
      if (grads[i].offset() != slice.offset() || grads[i].strides() != slice.strides() ||
          grads[i].shape() != slice.shape())
        return Tensor();
    }
    return whole;
  }

  int64_t dim_;
};

}  // namespace

std::vector<Tensor> unbind(const Tensor& x, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.dim(), "unbind: dim");
  std::vector<Tensor> parts;
  parts.reserve(static_cast<size_t>(x.size(d)));
  for (int64_t i = 0; i < x.size(d); ++i) parts.push_back(x.raw_select(d, i));
  if (should_record({&x})) record(std::make_shared<UnbindBackward>(d), {x}, parts);
  return parts;
}

namespace {

// x as [outer, size, inner] around `dim`, for `count` indices.
IndexShape index_shape(const Shape& shape, int64_t dim, int64_t count) {
  IndexShape s{1, shape[dim], 1, count};
  for (int64_t d = 0; d < dim; ++d) s.outer *= shape[d];
  for (int64_t d = dim + 1; d < shape.ndim(); ++d) s.inner *= shape[d];
  return s;
}

// Gradient of index_select: a deterministic scatter-add of the gradient rows. Saves only the
// indices (small: one integer per selected row).
class IndexSelectBackward final : public Node {
 public:
  IndexSelectBackward(const Tensor& indices, IndexShape shape) : Node("IndexSelectBackward"), shape_(shape) {
    save(indices);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const InputMeta& in = input_metas()[0];
    Tensor grad_x = zeros(in.shape, in.dtype, in.device);
    TG_DEVICE_DISPATCH(in.device, index_select_backward, grad_x, grads[0].raw_contiguous(), saved(0), shape_);
    return {grad_x};
  }

 private:
  IndexShape shape_;
};

}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& indices) {
  TG_CHECK(x.dim() > 0, ShapeError, "index_select: expected a tensor with at least 1 dim, got a 0-d tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "index_select: dim");
  TG_CHECK(indices.dtype() == DType::i64 || indices.dtype() == DType::i32, TypeError,
           "index_select: expected indices of dtype i64 or i32, got ", dtype_name(indices.dtype()));
  TG_CHECK(indices.dim() == 1, ShapeError, "index_select: expected 1-D indices, got shape ", indices.shape().str());
  TG_CHECK(indices.device() == x.device(), TypeError, "index_select: expected indices on ", x.device().str(),
           " (the device of x), got ", indices.device().str());
  const Tensor index = indices.raw_contiguous();
  const IndexShape s = index_shape(x.shape(), d, index.numel());
  Shape out_shape = x.shape();
  out_shape[d] = s.count;
  Tensor out = empty(out_shape, x.dtype(), x.device());
  TG_DEVICE_DISPATCH(x.device(), index_select, out, x.raw_contiguous(), index, s);
  if (should_record({&x})) record(std::make_shared<IndexSelectBackward>(index, s), {x}, {out});
  return out;
}

}  // namespace tg
