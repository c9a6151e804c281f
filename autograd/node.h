// Node: one recorded operation in the autograd graph. A node knows the edges to the nodes that
// produced its inputs, the metadata each input gradient must match, the tensors it saved for
// its backward (released as soon as that backward has run), and a sequence number: nodes are
// created in execution order, so decreasing sequence numbers walk the tape in reverse.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace tg {

struct Edge {
  std::shared_ptr<Node> node;  // null: the input needs no gradient
  uint32_t input_nr = 0;       // which output of `node` (= which input slot of its backward)
};

class Node {
 public:
  explicit Node(std::string name);
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return name_; }
  // A label set by the layer that ran the op (e.g. "qkv", "fc1"), used to group saved bytes in
  // memory reports; empty when none was set.
  const std::string& tag() const { return tag_; }
  void set_tag(std::string tag) { tag_ = std::move(tag); }
  uint64_t sequence_nr() const { return sequence_nr_; }
  uint32_t num_outputs() const { return num_outputs_; }

  // Gradients for each input (undefined where an input needs none) from the gradients of each
  // output (undefined where an output received none: treat as zero).
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) = 0;

  // Bytes of the tensors saved for backward (each storage counted once). Nodes whose strategy
  // saves compact copies override this to report exactly what they keep.
  virtual size_t saved_bytes() const;
  // Appends the storages behind saved_bytes(), each once: what a memory report needs to count a
  // storage that several nodes keep only once. Nodes that override saved_bytes() override this.
  virtual void saved_storages(std::vector<const Storage*>& out) const;
  // Frees what was saved for backward. The engine calls it right after apply() unless the
  // graph is retained; a later apply() then fails with a clear message.
  virtual void release_saved();
  bool released() const { return released_; }

  // Graph wiring, done once by tg::record() when the op runs.
  struct InputMeta {
    Shape shape;
    DType dtype;
    Device device;
  };
  void set_inputs(std::vector<Edge> edges, std::vector<InputMeta> metas);
  void set_num_outputs(uint32_t n) { num_outputs_ = n; }
  const std::vector<Edge>& next_edges() const { return next_edges_; }
  const std::vector<InputMeta>& input_metas() const { return input_metas_; }

 protected:
  // Keeps `tensor` for backward; returns its slot for saved().
  size_t save(const Tensor& tensor);
  // A saved tensor; throws the "backward a second time" error after release_saved().
  const Tensor& saved(size_t slot) const;
  // Throws that error after release_saved(): for nodes that keep what they saved elsewhere
  // (e.g. in a matmul strategy's SavedOperand).
  void check_not_released() const;
  // True when input `i` needs a gradient (lets backward skip work).
  bool needs_input_grad(size_t i) const { return i < next_edges_.size() && next_edges_[i].node != nullptr; }

 private:
  std::string name_;
  std::string tag_;
  uint64_t sequence_nr_;
  uint32_t num_outputs_ = 1;
  bool released_ = false;
  std::vector<Edge> next_edges_;
  std::vector<InputMeta> input_metas_;
  std::vector<Tensor> saved_;
};

// The node that adds incoming gradients into a leaf's .grad.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const Tensor& leaf);
  std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) override;
  void release_saved() override {}  // holds no activations; stays usable

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

}  // namespace tg
