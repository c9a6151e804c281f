// Node bookkeeping (sequence numbers, saved tensors) and AccumulateGrad.
#include "autograd/node.h"

#include <atomic>
#include <set>

#include "core/autograd_meta.h"

namespace tg {

namespace {
std::atomic<uint64_t> next_sequence_nr{0};
}

Node::Node(std::string name) : name_(std::move(name)), sequence_nr_(next_sequence_nr++) {}

void Node::set_inputs(std::vector<Edge> edges, std::vector<InputMeta> metas) {
  next_edges_ = std::move(edges);
  input_metas_ = std::move(metas);
}

size_t Node::save(const Tensor& tensor) {
  saved_.push_back(tensor.detach());  // a saved tensor must not keep the graph alive
  return saved_.size() - 1;
}

void Node::check_not_released() const {
  TG_CHECK(!released_, ValueError, "backward through ", name_, " a second time: its saved tensors were "
           "freed after the first backward; pass retain_graph=true to the first backward to keep them");
}

const Tensor& Node::saved(size_t slot) const {
  check_not_released();
  TG_INTERNAL_ASSERT(slot < saved_.size(), name_, ": saved slot ", slot, " of ", saved_.size());
  return saved_[slot];
}

size_t Node::saved_bytes() const {
  std::set<const Storage*> seen;
  size_t bytes = 0;
  for (const Tensor& t : saved_) {
    if (t.defined() && seen.insert(t.storage().get()).second) bytes += t.storage()->nbytes();
  }
  return bytes;
}

void Node::saved_storages(std::vector<const Storage*>& out) const {
  std::set<const Storage*> seen;
  for (const Tensor& t : saved_)
    if (t.defined() && seen.insert(t.storage().get()).second) out.push_back(t.storage().get());
}

void Node::release_saved() {
  saved_.clear();
  saved_.shrink_to_fit();
  released_ = true;
}

AccumulateGrad::AccumulateGrad(const Tensor& leaf) : Node("AccumulateGrad"), leaf_(leaf.impl_ptr()) {}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grad_outputs) {
  auto impl = leaf_.lock();
  Tensor& incoming = grad_outputs[0];
  if (!impl || !incoming.defined()) return {};
  const Tensor leaf(impl);
  const Tensor current = leaf.grad();
  if (!current.defined()) {
    // Steal the incoming buffer when nothing else can see it; otherwise copy, so that no two
    // leaves ever share a gradient buffer (in-place updates like clipping would corrupt both).
    const bool unique = incoming.storage().use_count() == 1 && incoming.is_contiguous();
    leaf.set_grad(unique ? incoming.detach() : incoming.clone());
  } else {
    current.accumulate_(incoming);  // the leaf owns this buffer (stolen or cloned above)
  }
  incoming = Tensor();  // a stolen buffer is the leaf's alone before the hook runs
  // A copy: the hook may replace or remove itself.
  if (const std::function<void(const Tensor&)> hook = impl->autograd->post_accumulate_grad_hook) hook(leaf);
  return {};
}

}  // namespace tg
