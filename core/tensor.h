// Tensor: a handle to shared Storage plus shape, strides, offset, dtype and device. Copying a
// Tensor copies the handle; the raw_ views (raw_view/raw_reshape/raw_slice/raw_transpose/...)
// share storage; raw_contiguous()/clone()/to() copy. None of them records for autograd: the
// differentiable ops (tg::reshape, tg::transpose, ..., tg::cast) live in ops/, the tape in
// autograd/; core only keeps an opaque slot for autograd's per-tensor state.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "core/shape.h"
#include "core/storage.h"

namespace tg {

struct AutogradMeta;  // core/autograd_meta.h
class Node;          // autograd/node.h

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;     // in elements
  int64_t offset = 0;  // in elements, from storage->data()
  DType dtype = DType::f32;
  Device device;
  std::shared_ptr<AutogradMeta> autograd;  // null until the tensor takes part in autograd
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

  const Shape& shape() const { return checked().shape; }
  const Strides& strides() const { return checked().strides; }
  int64_t dim() const { return shape().ndim(); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape().numel(); }
  int64_t offset() const { return checked().offset; }
  DType dtype() const { return checked().dtype; }
  Device device() const { return checked().device; }
  size_t itemsize() const { return dtype_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * itemsize(); }
  bool is_contiguous() const { return tg::is_contiguous(shape(), strides()); }
  const std::shared_ptr<Storage>& storage() const { return checked().storage; }
  bool shares_storage(const Tensor& other) const { return storage() == other.storage(); }

  // Address of element 0 (storage base + offset).
  void* raw_data() const;
  template <class T>
  T* data() const {
    check_dtype(dtype_v<T>, "data<T>()");
    return static_cast<T*>(raw_data());
  }

  // Views and copies outside autograd: never recorded, so the result has no gradient path to
  // *this. They are for kernels, backward functions and optimizers. Model code uses the
  // recorded ops of the same names without the raw_ prefix (ops/shape_ops.h: tg::reshape,
  // tg::transpose, ...); no name means "recorded" in one place and "not recorded" in another.
  // Views share storage.
  Tensor raw_view(const Shape& shape) const;     // one dim may be -1; ShapeError if not viewable
  Tensor raw_reshape(const Shape& shape) const;  // view when possible, else a contiguous copy
  Tensor raw_flatten() const { return raw_reshape({-1}); }
  Tensor raw_slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;  // clamps like Python
  Tensor raw_narrow(int64_t dim, int64_t start, int64_t length) const;  // exact range or IndexError
  Tensor raw_select(int64_t dim, int64_t index) const;                  // removes dim
  Tensor raw_transpose(int64_t dim0, int64_t dim1) const;
  Tensor raw_permute(const std::vector<int64_t>& dims) const;
  Tensor raw_unsqueeze(int64_t dim) const;
  Tensor raw_squeeze(int64_t dim) const;  // removes a size-1 dim; ShapeError otherwise
  Tensor raw_expand(const Shape& shape) const;  // broadcast size-1 dims with stride 0
  Tensor as_strided(const Shape& shape, const Strides& strides, int64_t offset) const;

  // Copies (not recorded either; tg::cast in ops/shape_ops.h is the recorded dtype conversion).
  Tensor raw_contiguous() const;  // *this when already contiguous
  Tensor clone() const;
  Tensor to(Device device) const;  // *this when already there
  Tensor to(DType dtype) const;    // *this when already that dtype
  void copy_(const Tensor& src) const;  // same shape (src may broadcast), any dtype/device
  void fill_(double value) const;
  // *this += other (same shape, dtype and device): gradient accumulation, not recorded.
  void accumulate_(const Tensor& other) const;

  double item() const;  // one element, any dtype, synchronizes with the device
  template <class T>
  std::vector<T> to_vector() const;  // host copy in logical (row-major) order; dtype must be T

  std::string str(int64_t edge_items = 3) const;  // header line plus (summarized) values

  void check_dtype(DType expected, const char* what) const;

  // Autograd state. Tensor's own methods above never record operations: differentiable
  // versions of the views and copies are the free functions in ops/ (tg::reshape, ...).
  bool requires_grad() const;
  // Marks a leaf (floating dtype) as a parameter whose gradient backward() accumulates.
  const Tensor& set_requires_grad(bool requires_grad) const;
  bool is_leaf() const;                 // not produced by a recorded op
  Tensor grad() const;                  // undefined until a backward reaches this leaf
  void set_grad(const Tensor& grad) const;  // undefined clears it (zero_grad)
  // For a leaf that requires grad: `hook(leaf)` runs each time a backward pass has accumulated
  // the leaf's gradient into grad() — its gradient for that pass is then complete (PyTorch's
  // register_post_accumulate_grad_hook; one hook per leaf, an empty function removes it). The
  // optimizer in backward (nn::Optimizer::apply_in_backward) updates the parameter there.
  void set_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook) const;
  std::shared_ptr<Node> grad_fn() const;
  uint32_t output_nr() const;
  Tensor detach() const;                // same storage and view, outside autograd
  AutogradMeta& autograd_meta() const;  // created on first use

 private:
  const TensorImpl& checked() const;
  Tensor make_view(Shape shape, Strides strides, int64_t offset) const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& out, const Tensor& tensor);

// Factories (core/tensor_factories.cpp).
Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor empty_like(const Tensor& like);
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
Tensor zeros_like(const Tensor& like);
Tensor arange(double start, double end, double step = 1, DType dtype = DType::f32,
              Device device = Device::cpu());
// Uniform in [low, high) and normal(mean, std) from Philox; floating dtypes only.
Tensor rand(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(),
            Generator& generator = default_generator(), double low = 0, double high = 1);
Tensor randn(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(),
             Generator& generator = default_generator(), double mean = 0, double std = 1);
// Copies `numel` host elements of `dtype` (row-major) into a new tensor on `device`.
Tensor from_host(const void* data, const Shape& shape, DType dtype, Device device = Device::cpu());
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu()) {
  TG_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), ShapeError, "from_vector: ",
           values.size(), " values do not fill shape ", shape.str(), " (", shape.numel(), " elements)");
  return from_host(values.data(), shape, dtype_v<T>, device);
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  check_dtype(dtype_v<T>, "to_vector<T>()");
  const Tensor host = to(Device::cpu()).raw_contiguous();
  const T* begin = static_cast<const T*>(host.raw_data());
  return std::vector<T>(begin, begin + host.numel());
}

}  // namespace tg
