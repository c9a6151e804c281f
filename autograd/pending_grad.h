// A node mixin for backward passes that add an input's gradient into the sum the engine is
// collecting for that input, in the pass that computes it. When several nodes send gradients to
// one input (a residual stream: the skip path and the branch's LayerNorm), the engine sums them
// (buffer += grad: two reads and a write of the whole gradient, after the node's own write). A
// node that writes the input's gradient elementwise can add into the buffer instead: the engine
// offers it the sum collected so far — only when nothing else can see that memory — and the node
// returns the same tensor, updated in place, as that input's gradient. Each element then gets
// buffer + gradient with the gradient rounded to the buffer's dtype first: the engine's sum.
#pragma once

#include <cstddef>
#include <vector>

#include "core/tensor.h"

namespace tg {

class AddsIntoPendingGrad {
 public:
  virtual ~AddsIntoPendingGrad() = default;

  // Whether this node's backward can add input `input`'s gradient into an offered tensor.
  virtual bool adds_into_pending_grad(size_t input) const = 0;

  // The engine, before apply(): `sum` (contiguous, of the input's shape, dtype and device, its
  // memory held by nothing else) is the gradient collected so far for input `input`.
  void offer_pending_grad(size_t input, Tensor&& sum);
  // The engine, after apply(): whether an offered sum was not taken (a bug in the node: that
  // gradient would be lost).
  bool has_untaken_pending_grad() const;

 protected:
  // The sum offered for `input`, or an undefined tensor; the node adds its gradient into it and
  // returns it as input `input`'s gradient.
  Tensor take_pending_grad(size_t input);

 private:
  std::vector<Tensor> pending_;
};

}  // namespace tg
