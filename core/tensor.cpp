// Tensor accessors, views (sharing storage) and copies.
#include "core/tensor.h"

#include <algorithm>
#include <numeric>
#include <optional>

#include "core/memory_kernels.h"

namespace tg {

const TensorImpl& Tensor::checked() const {
  TG_CHECK(impl_ != nullptr, ValueError, "operation on an undefined (default-constructed) Tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim())]; }
int64_t Tensor::stride(int64_t d) const { return strides()[static_cast<size_t>(wrap_dim(d, dim()))]; }

void* Tensor::raw_data() const {
  const TensorImpl& t = checked();
  return static_cast<char*>(t.storage->data()) + static_cast<size_t>(t.offset) * dtype_size(t.dtype);
}

void Tensor::check_dtype(DType expected, const char* what) const {
  TG_CHECK(dtype() == expected, TypeError, what, ": expected dtype ", dtype_name(expected), ", got ",
           dtype_name(dtype()));
}

Tensor Tensor::make_view(Shape shape, Strides strides, int64_t offset) const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = dtype();
  impl->device = device();
  return Tensor(std::move(impl));
}

namespace {

// Resolves one -1 entry so that the shape holds `numel` elements.
Shape infer_shape(const Shape& requested, int64_t numel, const Shape& from) {
  Shape shape = requested;
  int64_t known = 1, infer_at = -1;
  for (int64_t i = 0; i < shape.ndim(); ++i) {
    if (shape[i] == -1) {
      TG_CHECK(infer_at < 0, ShapeError, "view/reshape to ", requested.str(), ": only one dim may be -1");
      infer_at = i;
    } else {
      TG_CHECK(shape[i] >= 0, ShapeError, "view/reshape to ", requested.str(), ": invalid size ", shape[i]);
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    TG_CHECK(known != 0 && numel % known == 0, ShapeError, "cannot view/reshape shape ", from.str(),
             " (", numel, " elements) as ", requested.str());
    shape[infer_at] = numel / known;
  }
  TG_CHECK(shape.numel() == numel, ShapeError, "cannot view/reshape shape ", from.str(), " (", numel,
           " elements) as ", requested.str(), " (", shape.numel(), " elements)");
  return shape;
}

// Strides that view (old_shape, old_strides) memory as new_shape, if any (PyTorch's rule:
// each run of dims that is contiguous in memory may be regrouped freely).
std::optional<Strides> view_strides(const Shape& old_shape, const Strides& old_strides,
                                    const Shape& new_shape) {
  if (old_shape.ndim() == 0 || tg::is_contiguous(old_shape, old_strides))
    return contiguous_strides(new_shape);
  Strides new_strides(static_cast<size_t>(new_shape.ndim()));
  int64_t view_d = new_shape.ndim() - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = old_shape.ndim() - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= old_shape[tensor_d];
    const bool chunk_ends =
        tensor_d == 0 || (old_shape[tensor_d - 1] != 1 &&
                          old_strides[static_cast<size_t>(tensor_d - 1)] != tensor_numel * chunk_base_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
      new_strides[static_cast<size_t>(view_d)] = view_numel * chunk_base_stride;
      view_numel *= new_shape[view_d];
      --view_d;
    }
    if (view_numel != tensor_numel) return std::nullopt;
    if (tensor_d > 0) {
      chunk_base_stride = old_strides[static_cast<size_t>(tensor_d - 1)];
      tensor_numel = view_numel = 1;
    }
  }
  if (view_d != -1) return std::nullopt;
  return new_strides;
}

}  // namespace

Tensor Tensor::raw_view(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), this->shape());
  auto strides = view_strides(this->shape(), this->strides(), shape);
  TG_CHECK(strides.has_value(), ShapeError, "view: shape ", shape.str(), " is not compatible with the ",
           "strides ", strides_str(this->strides()), " of a tensor of shape ", this->shape().str(),
           "; use reshape() (which copies) or contiguous() first");
  return make_view(shape, std::move(*strides), offset());
}

Tensor Tensor::raw_reshape(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), this->shape());
  if (auto strides = view_strides(this->shape(), this->strides(), shape))
    return make_view(shape, std::move(*strides), offset());
  return raw_contiguous().raw_view(shape);
}

Tensor Tensor::raw_slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim());
  TG_CHECK(step > 0, ValueError, "slice: step must be positive, got ", step);
  const int64_t n = shape()[d];
  auto clamp_index = [n](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + n : i, 0, n); };
  start = clamp_index(start);
  end = std::max(clamp_index(end), start);
  Shape new_shape = shape();
  Strides new_strides = strides();
  new_shape[d] = (end - start + step - 1) / step;
  new_strides[static_cast<size_t>(d)] *= step;
  return make_view(new_shape, new_strides, offset() + start * strides()[static_cast<size_t>(d)]);
}

Tensor Tensor::raw_narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim());
  TG_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d], IndexError, "narrow: range [",
           start, ", ", start + length, ") is outside dim ", d, " of size ", shape()[d]);
  return raw_slice(d, start, start + length);
}

Tensor Tensor::raw_select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim());
  const int64_t n = shape()[d];
  TG_CHECK(index >= -n && index < n, IndexError, "select: index ", index, " is out of range for dim ", d,
           " of size ", n);
  if (index < 0) index += n;
  Shape new_shape = shape();
  Strides new_strides = strides();
  const int64_t new_offset = offset() + index * new_strides[static_cast<size_t>(d)];
  new_shape.dims().erase(new_shape.dims().begin() + d);
  new_strides.erase(new_strides.begin() + d);
  return make_view(new_shape, new_strides, new_offset);
}

Tensor Tensor::raw_transpose(int64_t dim0, int64_t dim1) const {
  std::vector<int64_t> order(static_cast<size_t>(dim()));
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[static_cast<size_t>(wrap_dim(dim0, dim()))], order[static_cast<size_t>(wrap_dim(dim1, dim()))]);
  return raw_permute(order);
}

Tensor Tensor::raw_permute(const std::vector<int64_t>& dims) const {
  TG_CHECK(static_cast<int64_t>(dims.size()) == dim(), ShapeError, "permute: got ", dims.size(),
           " dims for a tensor with ", dim(), " dims");
  Shape new_shape = shape();
  Strides new_strides = strides();
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], dim());
    TG_CHECK(!seen[static_cast<size_t>(d)], ValueError, "permute: dim ", d, " appears twice");
    seen[static_cast<size_t>(d)] = true;
    new_shape[static_cast<int64_t>(i)] = shape()[d];
    new_strides[i] = strides()[static_cast<size_t>(d)];
  }
  return make_view(new_shape, new_strides, offset());
}

Tensor Tensor::raw_unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1);
  Shape new_shape = shape();
  Strides new_strides = strides();
  const int64_t stride = d < dim() ? strides()[static_cast<size_t>(d)] * shape()[d] : 1;
  new_shape.dims().insert(new_shape.dims().begin() + d, 1);
  new_strides.insert(new_strides.begin() + d, stride);
  return make_view(new_shape, new_strides, offset());
}

Tensor Tensor::raw_squeeze(int64_t d) const {
  d = wrap_dim(d, dim());
  TG_CHECK(shape()[d] == 1, ShapeError, "squeeze: dim ", d, " has size ", shape()[d], ", expected 1");
  return raw_select(d, 0);
}

Tensor Tensor::raw_expand(const Shape& target) const {
  TG_CHECK(target.ndim() >= dim(), ShapeError, "expand: cannot expand shape ", shape().str(), " to ",
           target.str(), " (fewer dims)");
  const int64_t lead = target.ndim() - dim();
  Strides new_strides(static_cast<size_t>(target.ndim()), 0);
  for (int64_t i = 0; i < dim(); ++i) {
    const int64_t size = shape()[i], want = target[lead + i];
    TG_CHECK(size == want || size == 1, ShapeError, "expand: cannot expand shape ", shape().str(), " to ",
             target.str(), " (dim ", i, " has size ", size, ")");
    new_strides[static_cast<size_t>(lead + i)] = size == want ? strides()[static_cast<size_t>(i)] : 0;
  }
  return make_view(target, new_strides, offset());
}

Tensor Tensor::as_strided(const Shape& shape, const Strides& strides, int64_t offset) const {
  TG_CHECK(static_cast<int64_t>(strides.size()) == shape.ndim(), ShapeError, "as_strided: ",
           strides.size(), " strides for shape ", shape.str());
  int64_t last = offset;
  for (int64_t i = 0; i < shape.ndim(); ++i) {
    TG_CHECK(strides[static_cast<size_t>(i)] >= 0 && shape[i] >= 0, ValueError, "as_strided: negative size or stride");
    if (shape[i] > 0) last += (shape[i] - 1) * strides[static_cast<size_t>(i)];
  }
  TG_CHECK(offset >= 0 && (shape.numel() == 0 ||
                           static_cast<size_t>(last + 1) * itemsize() <= storage()->nbytes()),
           IndexError, "as_strided: view reaches element ", last, " beyond storage of ",
           storage()->nbytes() / itemsize(), " elements");
  return make_view(shape, strides, offset);
}

Tensor Tensor::raw_contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  check_device_usable(target);
  const Tensor src = raw_contiguous();
  Tensor out = empty(shape(), dtype(), target);
  if (nbytes() == 0) return out;
#if TG_WITH_CUDA
  if (target.is_cuda() && src.device().is_cpu()) {
    kernels::copy_host_to_device(out.raw_data(), src.raw_data(), nbytes(), target.index);
  } else if (target.is_cpu() && src.device().is_cuda()) {
    kernels::copy_device_to_host(out.raw_data(), src.raw_data(), nbytes(), src.device().index);
  } else {
    return src.to(Device::cpu()).to(target);  // between two GPUs, through the host
  }
#endif
  return out;
}

void Tensor::copy_(const Tensor& src) const {
  TG_CHECK(src.defined(), ValueError, "copy_: source tensor is undefined");
  const Tensor from = src.device() == device() ? src : src.to(device());
  const Tensor source = from.shape() == shape() ? from : from.raw_expand(shape());
  if (device().is_cpu()) {
    kernels::copy_cpu(*this, source);
    return;
  }
#if TG_WITH_CUDA
  kernels::copy_cuda(*this, source);
#endif
}

void Tensor::fill_(double value) const {
  if (device().is_cpu()) {
    kernels::fill_cpu(*this, value);
    return;
  }
#if TG_WITH_CUDA
  kernels::fill_cuda(*this, value);
#endif
}

void Tensor::accumulate_(const Tensor& other) const {
  TG_CHECK(other.shape() == shape() && other.dtype() == dtype() && other.device() == device(), ShapeError,
           "accumulate_: expected a tensor of shape ", shape().str(), ", dtype ", dtype_name(dtype()), " on ",
           device().str(), ", got shape ", other.shape().str(), ", dtype ", dtype_name(other.dtype()), " on ",
           other.device().str());
  if (device().is_cpu()) {
    kernels::accumulate_cpu(*this, other);
    return;
  }
#if TG_WITH_CUDA
  kernels::accumulate_cuda(*this, other);
#endif
}

double Tensor::item() const {
  TG_CHECK(numel() == 1, ValueError, "item(): expected a tensor with one element, got shape ", shape().str(),
           " (", numel(), " elements)");
  const Tensor host = to(DType::f64).to(Device::cpu());
  return *static_cast<const double*>(host.raw_data());
}

}  // namespace tg
