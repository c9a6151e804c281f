// --memory-report: where the activation memory of a training step goes. After the forward
// pass (before backward) the autograd graph holds every tensor saved for backward, which is
// when activation memory peaks; walking it from the loss and summing Node::saved_bytes() by the
// node's tag (the layer role: qkv, proj, fc1, fc2, attn-scores, attn-context, softmax,
// layer-norm, gelu, ...; the node's name when untagged) shows which layers hold it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "apps/vit/strategies.h"
#include "core/tensor.h"

namespace tg::train {

struct SavedBytes {
  std::string kind;  // tag, or node name when untagged
  int64_t nodes = 0;
  int64_t bytes = 0;
};

// Every node reachable from root's grad_fn, grouped by kind; largest first. A storage saved by
// several nodes counts in each, and a saved view counts its whole storage (Node::saved_bytes
// dedups within a node only): e.g. softmax and the attention context matmul both count P.
std::vector<SavedBytes> saved_bytes_by_kind(const Tensor& root);

// A table of the groups with their share of the sum, and `allocated_bytes` (the allocator's
// count at the walk: every live storage once, activations, parameters and data alike).
std::string format_saved_bytes(const std::vector<SavedBytes>& groups, int64_t allocated_bytes);

// What the run samples, as installed: "sampled (as run): blocks 0-11: qkv, proj, fc2 (wta-crs)",
// one line per group of consecutive blocks with the same slots; "sampled (as run): nothing"
// when every slot is exact.
std::string format_sampled_slots(const std::vector<vit::SampledSlot>& slots);

}  // namespace tg::train
