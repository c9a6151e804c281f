// Activation checkpointing: the forward without recording, and the node that reruns it in
// backward and backpropagates through the rerun (a nested backward on the rerun's graph).
#include "autograd/checkpoint.h"

#include <memory>

#include "autograd/engine.h"

namespace tg {

namespace {

class CheckpointBackward final : public Node {
 public:
  CheckpointBackward(std::function<Tensor(const std::vector<Tensor>&)> fn, const std::vector<Tensor>& inputs,
                     std::vector<Generator*> generators, std::vector<uint64_t> offsets)
      : Node("CheckpointBackward"), fn_(std::move(fn)), generators_(std::move(generators)), offsets_(std::move(offsets)) {
    for (const Tensor& input : inputs) save(input);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const size_t n = input_metas().size();
    if (!grads[0].defined()) return std::vector<Tensor>(n);
    // The rerun's inputs: leaves of a graph of its own, so that its backward stops at them.
    std::vector<Tensor> inputs;
    for (size_t i = 0; i < n; ++i) {
      const Tensor& original = saved(i);
      Tensor leaf = original.defined() ? original.detach() : original;
      if (leaf.defined() && needs_input_grad(i)) leaf.set_requires_grad(true);
      inputs.push_back(leaf);
    }
    // Rewind the generators to where the first run found them; afterwards put them back where
    // the rest of the program has taken them since.
    std::vector<uint64_t> now;
    for (size_t g = 0; g < generators_.size(); ++g) {
      now.push_back(generators_[g]->offset());
      generators_[g]->set_offset(offsets_[g]);
    }
    Tensor output;
    {
      const GradModeGuard grad_on(true);  // the engine runs nodes with it off
      output = fn_(inputs);
    }
    for (size_t g = 0; g < generators_.size(); ++g) generators_[g]->set_offset(now[g]);
    std::vector<Tensor> input_grads(n);
    if (output.requires_grad()) {
      backward(output, grads[0]);
      for (size_t i = 0; i < n; ++i)
        if (inputs[i].defined() && inputs[i].requires_grad()) input_grads[i] = inputs[i].grad();
    }
    return input_grads;
  }

 private:
  std::function<Tensor(const std::vector<Tensor>&)> fn_;
  std::vector<Generator*> generators_;
  std::vector<uint64_t> offsets_;  // each generator's offset when the first run started
};

}  // namespace

Tensor checkpoint(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
                  const std::vector<Generator*>& generators) {
  if (!GradMode::enabled()) return fn(inputs);
  std::vector<uint64_t> offsets;
  for (Generator* g : generators) offsets.push_back(g->offset());
  Tensor output;
  {
    NoGradGuard no_grad;
    output = fn(inputs);
  }
  record(std::make_shared<CheckpointBackward>(fn, inputs, generators, std::move(offsets)), inputs, {output});
  return output;
}

}  // namespace tg
