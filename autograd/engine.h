// The backward engine and the helpers ops use to record themselves on the tape.
#pragma once

#include <memory>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"

namespace tg {

// Runs backward from `root`: gradients flow through every recorded node reachable from it, in
// reverse order of execution, and accumulate into .grad() of leaves that require grad. `grad`
// is d(something)/d(root); it may be omitted only for a one-element root (then it is 1).
// Each node's saved tensors are released right after its backward unless retain_graph.
void backward(const Tensor& root, const Tensor& grad = Tensor(), bool retain_graph = false);

// True when an op on these inputs must record a node (grad mode on, an input requires grad).
bool should_record(std::initializer_list<const Tensor*> inputs);
bool should_record(const std::vector<Tensor>& inputs);

// Wires `node` to `inputs` (edges and the metadata their gradients must match) and makes it
// the grad_fn of `outputs`, which then require grad.
void record(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs);

// The edge through which a gradient for `tensor` enters the graph (its grad_fn, or for a leaf
// that requires grad its AccumulateGrad node); an empty edge when it needs no gradient.
Edge gradient_edge(const Tensor& tensor);

// Clears .grad() of each tensor (PyTorch's zero_grad(set_to_none=True)).
void zero_grad(const std::vector<Tensor>& tensors);

}  // namespace tg
