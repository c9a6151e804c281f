// --memory-report: where the activation memory of a training step goes. After the forward
// pass (before backward) the autograd graph holds every tensor saved for backward. Two views:
// - per block and kind, what is kept, what is recomputed (checkpointed, norm or GELU
//   recomputation) and what is sampled, each storage once (a storage that several nodes keep,
//   like the attention output that proj also keeps, counts once): from the memory model's
//   replay of the step (apps/vit/memory_model.h), checked against the allocator's count at that
//   moment;
// - per node kind, walking the graph from the loss by the node's tag (qkv, proj, fc1, fc2,
//   attn-scores, attn-context, softmax, layer-norm, gelu, ...; the node's name when untagged):
//   the sum of Node::saved_bytes() (per node: a storage kept by several nodes counts in each)
//   and the storages each once (Node::saved_storages; a shared one under the first kind met).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "apps/vit/memory_model.h"
#include "apps/vit/plan.h"
#include "apps/vit/strategies.h"
#include "core/tensor.h"

namespace tg::train {

struct SavedBytes {
  std::string kind;  // tag, or node name when untagged
  int64_t nodes = 0;
  int64_t bytes = 0;         // the nodes' saved_bytes(): a storage several nodes keep counts in each
  int64_t unique_bytes = 0;  // the storages not met earlier in the walk, each once
};

// Every node reachable from root's grad_fn, grouped by kind; largest per-node bytes first. A
// saved view counts its whole storage. In `bytes` a storage saved by several nodes counts in each
// (softmax and the attention context matmul both count P); in `unique_bytes` it counts once,
// under the kind of the first node the depth-first walk from the loss meets that keeps it, so the
// groups' unique bytes add up to the bytes the graph keeps alive.
std::vector<SavedBytes> saved_bytes_by_kind(const Tensor& root);

// A table of the groups with their share of the sum, and `allocated_bytes` (the allocator's
// count at the walk: every live storage once, activations, parameters and data alike).
std::string format_saved_bytes(const std::vector<SavedBytes>& groups, int64_t allocated_bytes);

// Per block (and outside the blocks), the kept bytes by kind after forward with their sum, the
// block's recomputation and sampling, from `predicted` (the prediction of the step that was
// walked: the first of the run, or a later one); then the predicted allocated bytes at that
// moment against the allocator's `measured_allocated`.
std::string format_kept_by_block(const vit::MemoryPlan& plan, const vit::MemoryPrediction& predicted,
                                 int64_t measured_allocated);

// What the run samples, as installed: "sampled (as run): blocks 0-11: qkv, proj, fc2 (wta-crs)",
// one line per group of consecutive blocks with the same slots; "sampled (as run): nothing"
// when every slot is exact.
std::string format_sampled_slots(const std::vector<vit::SampledSlot>& slots);

}  // namespace tg::train
