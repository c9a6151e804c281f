// GradientReducer (grad_reducer.h): bucket buffers, the hooks that fill and launch them, and the
// end-of-backward check.
#include "dist/grad_reducer.h"

#include "core/error.h"

namespace tg::dist {

GradientReducer::GradientReducer(const NamedTensors& parameters, Communicator& comm, const BucketOptions& options)
    : comm_(comm),
      plan_([&] {
        std::vector<BucketParam> params;
        for (const auto& [name, tensor] : parameters) params.push_back({name, tensor.numel(), tensor.dtype()});
        return plan_buckets(params, options);
      }()),
      tracker_(plan_) {
  for (const auto& [name, tensor] : parameters) {
    TG_CHECK(tensor.device() == comm.device(), TypeError, "GradientReducer: parameter '", name, "' is on ",
             tensor.device().str(), ", the communicator reduces tensors on ", comm.device().str());
    TG_CHECK(tensor.is_contiguous(), ValueError, "GradientReducer: parameter '", name, "' must be contiguous");
    parameters_.push_back(tensor);
  }
  for (const Bucket& bucket : plan_.buckets) buffers_.push_back(zeros({bucket.numel}, bucket.dtype, comm.device()));
  slots_.resize(parameters_.size());
  for (size_t b = 0; b < plan_.buckets.size(); ++b)
    for (const BucketEntry& entry : plan_.buckets[b].entries) {
      const Tensor& param = parameters_[static_cast<size_t>(entry.param)];
      slots_[static_cast<size_t>(entry.param)] =
          buffers_[b].raw_narrow(0, entry.offset, param.numel()).raw_view(param.shape());
    }
  for (size_t i = 0; i < parameters_.size(); ++i)
    parameters_[i].set_post_accumulate_grad_hook(
        [this, i](const Tensor& param) { on_gradient(static_cast<int>(i), param); });
}

GradientReducer::~GradientReducer() {
  for (const Tensor& param : parameters_) param.set_post_accumulate_grad_hook({});
  try {
    comm_.wait();  // the buffers' memory is reused only after the collectives that read it
  } catch (const Error&) {  // an aborted communicator: nothing of it runs any more
  }
}

void GradientReducer::on_gradient(int param, const Tensor& tensor) {
  const Tensor& slot = slots_[static_cast<size_t>(param)];
  slot.copy_(tensor.grad());
  tensor.set_grad(slot);  // Note [gradients as bucket views]
  for (const int bucket : tracker_.mark_ready(param)) {
    comm_.all_reduce(buffers_[static_cast<size_t>(bucket)], ReduceOp::average);
    ++launched_;
  }
}

void GradientReducer::finish_backward() {
  tracker_.check_complete();
  comm_.wait();
  tracker_.reset();
}

}  // namespace tg::dist
