// GradientReducer: the data-parallel gradient average of one model, as PyTorch DDP's reducer
// does it. The parameters' buckets (dist/buckets.h) each get one flat buffer, allocated once on
// the parameters' device; a post-accumulate-grad hook on every parameter (Tensor::
// set_post_accumulate_grad_hook) runs as soon as backward has made its gradient final, copies
// the gradient into the parameter's slot of its bucket, makes the slot the parameter's .grad
// (the original gradient buffer is freed right there), marks the parameter ready and launches
// every bucket that is complete (in plan order) as an in-place all-reduce average on the
// Communicator. So the first buckets travel while backward still computes the earlier layers'
// gradients. finish_backward() at the end of backward checks that every parameter got a
// gradient and orders the caller's later work (clipping, the optimizer) after the averages.
//
// Note [gradients as bucket views]: after the hook, a parameter's gradient is a view of its
// bucket (DDP's gradient_as_bucket_view) rather than a buffer of its own that the average is
// copied back into: one copy per gradient instead of two, and the gradients' memory is the
// buckets' (allocated once) instead of buckets plus gradients. Why no record-stream is needed
// on CUDA: the communication stream only ever touches the bucket buffers, which live as long
// as the reducer; a step's copy into a bucket is queued on the compute stream after the previous
// step's optimizer read it there, and the all-reduce waits for that copy (dist/communicator.h,
// Note [communicator ordering]). The original gradient is freed on the compute stream, which
// alone used it. The optimizer's zero_grad drops the views; the next backward makes fresh
// gradients and the hooks copy them in again.
#pragma once

#include <vector>

#include "dist/buckets.h"
#include "dist/communicator.h"
#include "dist/consistency.h"

namespace tg::dist {

class GradientReducer {
 public:
  // `parameters` in registration order (nn::Module::named_parameters()), all on comm.device(),
  // contiguous, leaves that require grad, each without a post-accumulate-grad hook yet (one
  // hook per parameter: the optimizer in backward cannot share them). Both must outlive this.
  GradientReducer(const NamedTensors& parameters, Communicator& comm, const BucketOptions& options = {});
  // Removes the hooks; the buckets are freed after the caller's stream waits for the
  // collectives that may still use them.
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // The end of backward: DistributedError naming the parameters that got no gradient (every
  // rank must produce every gradient every step), else the caller's later work is ordered after
  // the averages and the tracker is ready for the next step.
  void finish_backward();

  const BucketPlan& plan() const { return plan_; }
  int64_t buckets_launched() const { return launched_; }  // over the reducer's lifetime

 private:
  void on_gradient(int param, const Tensor& tensor);

  std::vector<Tensor> parameters_;
  Communicator& comm_;
  BucketPlan plan_;
  BucketTracker tracker_;
  std::vector<Tensor> buffers_;  // per bucket: [bucket numel], flat
  std::vector<Tensor> slots_;    // per parameter: its part of its bucket, in its shape
  int64_t launched_ = 0;
};

}  // namespace tg::dist
