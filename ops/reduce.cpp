// Reductions: forward dispatch and backward nodes.
#include "ops/reduce.h"

#include <algorithm>

#include "autograd/engine.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/reduce_kernels.h"

namespace tg {

namespace {

struct ReducePlan {
  Tensor input;        // contiguous, laid out as [outer, reduce, inner]
  ReduceShape shape;
  Shape out_shape;     // without the reduced dims (or with size 1 when keepdim)
  Shape keepdim_shape; // reduced dims kept as size 1
};

// Normalizes dims and arranges the input so the reduced dims form one contiguous run.
ReducePlan plan_reduce(const Tensor& x, std::vector<int64_t> dims, bool keepdim, const char* op) {
  const int64_t n = x.dim();
  if (dims.empty())
    for (int64_t d = 0; d < n; ++d) dims.push_back(d);
  std::vector<bool> reduced(static_cast<size_t>(n), false);
  for (int64_t& d : dims) {
    d = wrap_dim(d, n, op);
    TG_CHECK(!reduced[static_cast<size_t>(d)], ValueError, op, ": dim ", d, " listed twice");
    reduced[static_cast<size_t>(d)] = true;
  }
  ReducePlan plan;
  plan.keepdim_shape = x.shape();
  std::vector<int64_t> kept_dims;
  for (int64_t d = 0; d < n; ++d) {
    if (reduced[static_cast<size_t>(d)]) plan.keepdim_shape[d] = 1;
    else kept_dims.push_back(x.shape()[d]);
  }
  plan.out_shape = keepdim ? plan.keepdim_shape : Shape(kept_dims);
  std::sort(dims.begin(), dims.end());
  const bool one_run = n == 0 || dims.back() - dims.front() + 1 == static_cast<int64_t>(dims.size());
  int64_t outer = 1, reduce = 1, inner = 1;
  if (one_run && n > 0) {
    for (int64_t d = 0; d < dims.front(); ++d) outer *= x.shape()[d];
    for (int64_t d : dims) reduce *= x.shape()[d];
    for (int64_t d = dims.back() + 1; d < n; ++d) inner *= x.shape()[d];
    plan.input = x.raw_contiguous();
  } else {
    std::vector<int64_t> order;  // kept dims first, reduced dims last
    for (int64_t d = 0; d < n; ++d)
      if (!reduced[static_cast<size_t>(d)]) order.push_back(d);
    for (int64_t d : dims) {
      order.push_back(d);
      reduce *= x.shape()[d];
    }
    for (int64_t d = 0; d < n; ++d)
      if (!reduced[static_cast<size_t>(d)]) outer *= x.shape()[d];
    plan.input = x.raw_permute(order).raw_contiguous();
  }
  plan.shape = {outer, reduce, inner};
  return plan;
}

Tensor sum_forward(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, bool average,
                   Shape* keepdim_shape, DType out_dtype) {
  const char* op = average ? "mean" : "sum";
  TG_CHECK(is_floating(x.dtype()), TypeError, op, ": expected a floating dtype, got ", dtype_name(x.dtype()));
  ReducePlan plan = plan_reduce(x, dims, keepdim, op);
  Tensor out = empty(plan.out_shape, out_dtype, x.device());
  const double scale = average ? 1.0 / static_cast<double>(std::max<int64_t>(plan.shape.reduce, 1)) : 1.0;
  TG_DEVICE_DISPATCH(x.device(), sum, out, plan.input, plan.shape, scale);
  if (keepdim_shape) *keepdim_shape = plan.keepdim_shape;
  return out;
}

// Gradient of a sum/mean: the output gradient broadcast back over the reduced dims (scaled by
// 1/count for a mean), written in one pass.
class SumBackward final : public Node {
 public:
  SumBackward(Shape keepdim_shape, double scale, bool average)
      : Node(average ? "MeanBackward" : "SumBackward"), keepdim_shape_(std::move(keepdim_shape)), scale_(scale) {}

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const Shape& input_shape = input_metas()[0].shape;
    return {affine(grads[0].raw_reshape(keepdim_shape_).raw_expand(input_shape), scale_, 0)};
  }

 private:
  Shape keepdim_shape_;
  double scale_;
};

Tensor reduce_op(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, bool average) {
  Shape keepdim_shape;
  Tensor out = sum_forward(x, dims, keepdim, average, &keepdim_shape, x.dtype());
  if (should_record({&x})) {
    const double scale = average ? static_cast<double>(out.numel()) / static_cast<double>(std::max<int64_t>(x.numel(), 1)) : 1.0;
    record(std::make_shared<SumBackward>(keepdim_shape, scale, average), {x}, {out});
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) { return reduce_op(x, dims, keepdim, false); }
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) { return reduce_op(x, dims, keepdim, true); }

MaxResult max(const Tensor& x, int64_t dim, bool keepdim) {
  TG_CHECK(x.numel() > 0, ValueError, "max: cannot reduce an empty tensor (shape ", x.shape().str(), ")");
  ReducePlan plan = plan_reduce(x, {dim}, keepdim, "max");
  MaxResult result{empty(plan.out_shape, x.dtype(), x.device()), empty(plan.out_shape, DType::i64, x.device())};
  TG_DEVICE_DISPATCH(x.device(), max, result.values, result.indices, plan.input, plan.shape);
  return result;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { return max(x, dim, keepdim).indices; }

Tensor sum_to(const Tensor& x, const Shape& shape, std::optional<DType> out_dtype) {
  const DType dtype = out_dtype.value_or(x.dtype());
  TG_CHECK(dtype == x.dtype() || (x.dtype() == DType::bf16 && dtype == DType::f32), TypeError,
           "sum_to: a ", dtype_name(x.dtype()), " input sums into its own dtype (or f32 for bf16), not ",
           dtype_name(dtype));
  if (x.shape() == shape) return x.to(dtype);
  const int64_t lead = x.dim() - shape.ndim();
  TG_CHECK(lead >= 0, ShapeError, "sum_to: shape ", shape.str(), " has more dims than ", x.shape().str());
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
    } else {
      TG_CHECK(shape[d - lead] == x.shape()[d] || shape[d - lead] == 1, ShapeError, "sum_to: shape ",
               x.shape().str(), " does not broadcast from ", shape.str());
      if (shape[d - lead] == 1 && x.shape()[d] != 1) dims.push_back(d);
    }
  }
  if (dims.empty()) return x.raw_reshape(shape).to(dtype);
  return sum_forward(x, dims, /*keepdim=*/true, /*average=*/false, nullptr, dtype).raw_reshape(shape);
}

}  // namespace tg
