// Tensor's autograd accessors (the state lives in AutogradMeta; the graph in autograd/).
#include "core/autograd_meta.h"

namespace tg {

AutogradMeta& Tensor::autograd_meta() const {
  TensorImpl& t = const_cast<TensorImpl&>(checked());
  if (!t.autograd) t.autograd = std::make_shared<AutogradMeta>();
  return *t.autograd;
}

bool Tensor::requires_grad() const {
  const TensorImpl& t = checked();
  return t.autograd != nullptr && t.autograd->requires_grad;
}

const Tensor& Tensor::set_requires_grad(bool requires_grad) const {
  TG_CHECK(is_leaf(), ValueError, "set_requires_grad: only leaf tensors can be marked; this tensor was "
           "produced by an operation (use detach() to make a leaf)");
  TG_CHECK(!requires_grad || is_floating(dtype()), TypeError, "set_requires_grad: only floating tensors ",
           "can require gradients, got dtype ", dtype_name(dtype()));
  autograd_meta().requires_grad = requires_grad;
  return *this;
}

bool Tensor::is_leaf() const {
  const TensorImpl& t = checked();
  return t.autograd == nullptr || t.autograd->grad_fn == nullptr;
}

Tensor Tensor::grad() const {
  const TensorImpl& t = checked();
  return t.autograd ? t.autograd->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) const {
  if (grad.defined()) {
    TG_CHECK(grad.shape() == shape() && grad.dtype() == dtype() && grad.device() == device(), ShapeError,
             "set_grad: expected a gradient of shape ", shape().str(), ", dtype ", dtype_name(dtype()),
             " on ", device().str(), ", got shape ", grad.shape().str(), ", dtype ",
             dtype_name(grad.dtype()), " on ", grad.device().str());
  }
  autograd_meta().grad = grad;
}

void Tensor::set_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook) const {
  TG_CHECK(is_leaf() && requires_grad(), ValueError,
           "set_post_accumulate_grad_hook: expected a leaf that requires grad (a parameter), got ",
           is_leaf() ? "a leaf that does not require grad" : "a tensor produced by an operation");
  autograd_meta().post_accumulate_grad_hook = std::move(hook);
}

std::shared_ptr<Node> Tensor::grad_fn() const {
  const TensorImpl& t = checked();
  return t.autograd ? t.autograd->grad_fn : nullptr;
}

uint32_t Tensor::output_nr() const {
  const TensorImpl& t = checked();
  return t.autograd ? t.autograd->output_nr : 0;
}

Tensor Tensor::detach() const { return make_view(shape(), strides(), offset()); }

}  // namespace tg
