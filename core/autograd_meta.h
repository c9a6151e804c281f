// Per-tensor autograd state, stored in TensorImpl::autograd. The Node type and everything that
// builds or walks the graph live in autograd/; core only keeps these fields so that a Tensor
// can answer requires_grad()/grad()/grad_fn().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "core/tensor.h"

namespace tg {

class Node;  // autograd/node.h

struct AutogradMeta {
  bool requires_grad = false;             // leaves: set by the user; results: when recorded
  Tensor grad;                            // accumulated gradient of a leaf (undefined: none yet)
  std::shared_ptr<Node> grad_fn;          // node that produced this tensor (null for leaves)
  uint32_t output_nr = 0;                 // which output of grad_fn this tensor is
  std::weak_ptr<Node> grad_accumulator;   // a leaf's AccumulateGrad node, shared by all uses
  // Runs with the leaf each time a backward pass has accumulated its gradient into `grad`
  // (Tensor::set_post_accumulate_grad_hook); empty: none.
  std::function<void(const Tensor&)> post_accumulate_grad_hook;
};

}  // namespace tg
