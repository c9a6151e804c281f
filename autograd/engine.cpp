// Backward engine: dependency counting over the reachable graph, then a ready queue ordered by
// decreasing sequence number (the tape in reverse). Gradient buffers are freed as soon as the
// node that consumes them has run, and so are the node's saved tensors.
#include "autograd/engine.h"

#include <queue>
#include <unordered_map>

#include "autograd/pending_grad.h"
#include "core/autograd_meta.h"
#include "core/side_work.h"

namespace tg {

namespace {
thread_local bool grad_mode_enabled = true;

struct LaterFirst {
  bool operator()(const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) const {
    return a->sequence_nr() < b->sequence_nr();
  }
};

void check_gradient(const Node& node, size_t input, const Tensor& grad) {
  const Node::InputMeta& meta = node.input_metas()[input];
  TG_CHECK(grad.shape() == meta.shape, ShapeError, "backward of ", node.name(), " returned a gradient of shape ",
           grad.shape().str(), " for input ", input, ", expected shape ", meta.shape.str());
  TG_CHECK(grad.dtype() == meta.dtype, TypeError, "backward of ", node.name(), " returned a gradient of dtype ",
           dtype_name(grad.dtype()), " for input ", input, ", expected ", dtype_name(meta.dtype));
  TG_CHECK(grad.device() == meta.device, TypeError, "backward of ", node.name(), " returned a gradient on ",
           grad.device().str(), " for input ", input, ", expected ", meta.device.str());
}

// Whether `t`'s memory can be written in place: no other tensor (and no other handle to this one,
// such as the caller's root gradient) can see it.
bool memory_is_private(const Tensor& t) { return t.impl_ptr().use_count() == 1 && t.storage().use_count() == 1; }

// buffer += grad, in place when the buffer's memory is private to it.
void add_to_buffer(Tensor& buffer, Tensor&& grad) {
  if (!buffer.defined()) {
    buffer = std::move(grad);
    return;
  }
  if (!memory_is_private(buffer)) buffer = buffer.clone();
  buffer.accumulate_(grad);
}

using GradBuffers = std::unordered_map<Node*, std::vector<Tensor>>;

// Hands `node` the gradient sums already collected for the inputs it can add into
// (AddsIntoPendingGrad); each leaves `buffers` and comes back as that input's gradient.
void offer_pending_grads(const Node& node, AddsIntoPendingGrad& fusing, GradBuffers& buffers) {
  const auto& edges = node.next_edges();
  for (size_t i = 0; i < edges.size(); ++i) {
    if (!edges[i].node || !fusing.adds_into_pending_grad(i)) continue;
    auto it = buffers.find(edges[i].node.get());
    if (it == buffers.end() || it->second.size() <= edges[i].input_nr) continue;
    Tensor& sum = it->second[edges[i].input_nr];
    const Node::InputMeta& meta = node.input_metas()[i];
    if (!sum.defined() || !memory_is_private(sum) || !sum.is_contiguous() || sum.shape() != meta.shape ||
        sum.dtype() != meta.dtype || sum.device() != meta.device)
      continue;
    fusing.offer_pending_grad(i, std::move(sum));
    sum = Tensor();
  }
}
}  // namespace

bool GradMode::enabled() { return grad_mode_enabled; }
void GradMode::set_enabled(bool enabled) { grad_mode_enabled = enabled; }

bool should_record(std::initializer_list<const Tensor*> inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool should_record(const std::vector<Tensor>& inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& tensor) {
  if (!tensor.defined() || !tensor.requires_grad()) return {};
  AutogradMeta& meta = tensor.autograd_meta();
  if (meta.grad_fn) return {meta.grad_fn, meta.output_nr};
  std::shared_ptr<Node> accumulator = meta.grad_accumulator.lock();
  if (!accumulator) {
    accumulator = std::make_shared<AccumulateGrad>(tensor);
    meta.grad_accumulator = accumulator;
  }
  return {accumulator, 0};
}

void record(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs) {
  std::vector<Edge> edges;
  std::vector<Node::InputMeta> metas;
  edges.reserve(inputs.size());
  metas.reserve(inputs.size());
  for (const Tensor& input : inputs) {
    edges.push_back(gradient_edge(input));
    metas.push_back(input.defined() ? Node::InputMeta{input.shape(), input.dtype(), input.device()}
                                    : Node::InputMeta{{}, DType::f32, Device::cpu()});
  }
  node->set_inputs(std::move(edges), std::move(metas));
  node->set_num_outputs(static_cast<uint32_t>(outputs.size()));
  for (size_t i = 0; i < outputs.size(); ++i) {
    AutogradMeta& meta = outputs[i].autograd_meta();
    meta.requires_grad = true;
    meta.grad_fn = node;
    meta.output_nr = static_cast<uint32_t>(i);
  }
}

void backward(const Tensor& root, const Tensor& grad, bool retain_graph) {
  TG_CHECK(root.defined(), ValueError, "backward: the tensor is undefined");
  TG_CHECK(root.requires_grad(), ValueError, "backward: the tensor does not require grad (no recorded ",
           "operation connects it to a tensor with requires_grad)");
  Tensor root_grad = grad;
  if (!root_grad.defined()) {
    TG_CHECK(root.numel() == 1, ValueError, "backward: a gradient can be created implicitly only for a "
             "one-element output, got shape ", root.shape().str(), "; pass the gradient explicitly");
    root_grad = ones(root.shape(), root.dtype(), root.device());
  } else {
    TG_CHECK(root_grad.shape() == root.shape() && root_grad.dtype() == root.dtype() &&
                 root_grad.device() == root.device(),
             ShapeError, "backward: expected a gradient of shape ", root.shape().str(), ", dtype ",
             dtype_name(root.dtype()), " on ", root.device().str(), ", got shape ", root_grad.shape().str(),
             ", dtype ", dtype_name(root_grad.dtype()), " on ", root_grad.device().str());
  }
  NoGradGuard no_grad;
  // Side work of the forward (the sampler's selections, core/side_work.h) ends here: the operands
  // it holds are released before backward's own buffers are allocated, as in the single-stream order.
  join_side_work(root.device());
  const Edge root_edge = gradient_edge(root);

  // Count, for every reachable node, how many edges lead into it.
  std::unordered_map<Node*, int> dependencies;
  std::vector<Node*> stack{root_edge.node.get()};
  dependencies[root_edge.node.get()] = 0;
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Edge& edge : node->next_edges()) {
      if (!edge.node) continue;
      auto [it, inserted] = dependencies.try_emplace(edge.node.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(edge.node.get());
    }
  }

  GradBuffers buffers;
  buffers[root_edge.node.get()].resize(root_edge.node->num_outputs());
  buffers[root_edge.node.get()][root_edge.input_nr] = std::move(root_grad);
  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, LaterFirst> ready;
  ready.push(root_edge.node);
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.top();
    ready.pop();
    TG_CHECK(!node->released(), ValueError, "backward through ", node->name(), " a second time: its saved ",
             "tensors were freed after the first backward; pass retain_graph=true to the first backward to keep them");
    std::vector<Tensor> grad_outputs = std::move(buffers.extract(node.get()).mapped());
    auto* fusing = dynamic_cast<AddsIntoPendingGrad*>(node.get());
    if (fusing) offer_pending_grads(*node, *fusing, buffers);
    std::vector<Tensor> input_grads = node->apply(std::move(grad_outputs));
    grad_outputs.clear();  // a gradient passed through unchanged is now held by input_grads alone
    TG_INTERNAL_ASSERT(!fusing || !fusing->has_untaken_pending_grad(), node->name(),
                       " left a pending gradient sum untaken");
    if (!retain_graph) node->release_saved();
    const auto& edges = node->next_edges();
    TG_INTERNAL_ASSERT(input_grads.empty() || input_grads.size() == edges.size(), node->name(), " returned ",
                       input_grads.size(), " gradients for ", edges.size(), " inputs");
    for (size_t i = 0; i < input_grads.size(); ++i) {
      const Edge& edge = edges[i];
      if (!edge.node) continue;
      if (input_grads[i].defined()) {
        check_gradient(*node, i, input_grads[i]);
        std::vector<Tensor>& target = buffers[edge.node.get()];
        target.resize(edge.node->num_outputs());
        add_to_buffer(target[edge.input_nr], std::move(input_grads[i]));
      }
      if (--dependencies[edge.node.get()] == 0) ready.push(edge.node);
    }
    // Edges of a node that returned nothing (AccumulateGrad) still release their targets.
    if (input_grads.empty()) {
      for (const Edge& edge : edges)
        if (edge.node && --dependencies[edge.node.get()] == 0) ready.push(edge.node);
    }
  }
}

void zero_grad(const std::vector<Tensor>& tensors) {
  for (const Tensor& t : tensors) t.set_grad(Tensor());
}

}  // namespace tg
