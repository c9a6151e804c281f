// Saved-activation bytes by node kind, from a walk of the autograd graph.
#include "apps/train_vit/memory_report.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <map>
#include <sstream>
#include <unordered_set>

#include "autograd/node.h"
#include "core/memory_stats.h"

namespace tg::train {

std::vector<SavedBytes> saved_bytes_by_kind(const Tensor& root) {
  std::map<std::string, SavedBytes> groups;
  std::unordered_set<const Node*> seen;
  std::unordered_set<const Storage*> counted;  // storages already in some group
  std::vector<const Node*> stack;
  std::vector<const Storage*> storages;
  if (root.grad_fn()) stack.push_back(root.grad_fn().get());
  while (!stack.empty()) {
    const Node* node = stack.back();
    stack.pop_back();
    if (!seen.insert(node).second) continue;
    const std::string& kind = node->tag().empty() ? node->name() : node->tag();
    SavedBytes& group = groups[kind];
    group.kind = kind;
    group.nodes += 1;
    group.bytes += static_cast<int64_t>(node->saved_bytes());
    storages.clear();
    node->saved_storages(storages);
    for (const Storage* storage : storages)
      if (counted.insert(storage).second) group.unique_bytes += static_cast<int64_t>(storage->nbytes());
    for (const Edge& edge : node->next_edges())
      if (edge.node) stack.push_back(edge.node.get());
  }
  std::vector<SavedBytes> out;
  for (auto& [kind, group] : groups) out.push_back(group);
  std::stable_sort(out.begin(), out.end(), [](const SavedBytes& a, const SavedBytes& b) { return a.bytes > b.bytes; });
  return out;
}

std::string format_saved_bytes(const std::vector<SavedBytes>& groups, int64_t allocated_bytes) {
  int64_t total = 0, unique_total = 0;
  for (const SavedBytes& g : groups) {
    total += g.bytes;
    unique_total += g.unique_bytes;
  }
  std::string out = "Saved for backward at the peak (after forward), by node kind:\n";
  char line[160];
  std::snprintf(line, sizeof line, "  %-22s %6s %14s %14s %7s\n", "kind", "nodes", "per node", "each once", "share");
  out += line;
  for (const SavedBytes& g : groups) {
    if (g.bytes == 0) continue;
    std::snprintf(line, sizeof line, "  %-22s %6lld %14s %14s %6.1f%%\n", g.kind.c_str(),
                  static_cast<long long>(g.nodes), format_bytes(g.bytes).c_str(), format_bytes(g.unique_bytes).c_str(),
                  unique_total > 0 ? 100.0 * static_cast<double>(g.unique_bytes) / unique_total : 0.0);
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-22s %6s %14s %14s\n", "sum", "", format_bytes(total).c_str(),
                format_bytes(unique_total).c_str());
  out += line;
  out += "  (per node: a tensor saved by several nodes counts in each; each once: every storage once, under the\n"
         "  kind of the first node the walk from the loss meets that keeps it; a saved view counts its whole\n"
         "  storage. Allocated on the device at that moment, with parameters, optimizer state and data: " +
         format_bytes(allocated_bytes) + ")\n";
  int64_t empty_nodes = 0;
  for (const SavedBytes& g : groups)
    if (g.bytes == 0) empty_nodes += g.nodes;
  if (empty_nodes > 0) out += "  (" + std::to_string(empty_nodes) + " further nodes save nothing)\n";
  return out;
}

namespace {

// What a block recomputes in backward, in words.
std::string recomputed(const vit::BlockPlan& b) {
  if (b.checkpoint) return "the whole block (checkpoint rerun)";
  std::string out;
  if (b.recompute_norms) out = "norm1, norm2 outputs";
  if (b.recompute_gelu) out += (out.empty() ? "" : ", ") + std::string("fc1 output (fc1+gelu)");
  return out.empty() ? "-" : out;
}

std::string sampled(const vit::BlockPlan& b) {
  std::string out;
  for (size_t t = 0; t < vit::kPlanTargets.size(); ++t)
    if (b.sampled(t)) {
      char item[48];
      std::snprintf(item, sizeof item, "%s%s %.2g", out.empty() ? "" : ", ", nn::target_name(vit::kPlanTargets[t]),
                    b.ratio[t]);
      out += item;
    }
  return out.empty() ? "-" : "wta-crs " + out;
}

}  // namespace

std::string format_kept_by_block(const vit::MemoryPlan& plan, const vit::MemoryPrediction& p, int64_t measured) {
  using vit::MemoryKind;
  std::ostringstream out;
  out << "Kept for backward after forward, per block and kind (memory model, each storage once):\n";
  int64_t kept_sum = 0;
  for (size_t row = 0; row < p.after_forward.size(); ++row) {
    const bool block = row < plan.blocks.size();
    int64_t total = 0;
    std::string kinds;
    for (auto k = static_cast<size_t>(MemoryKind::block_input); k <= static_cast<size_t>(MemoryKind::embed_head); ++k)
      if (const int64_t bytes = p.after_forward[row][k]; bytes > 0) {
        total += bytes;
        kinds += (kinds.empty() ? "" : ", ") + std::string(vit::memory_kind_name(static_cast<MemoryKind>(k))) + " " +
                 format_bytes(bytes);
      }
    kept_sum += total;
    if (block)
      out << "  block " << row << " (" << vit::describe(plan.blocks[row]) << "): kept " << format_bytes(total) << " = "
          << (kinds.empty() ? "nothing" : kinds) << "; recomputed: " << recomputed(plan.blocks[row])
          << "; sampled: " << sampled(plan.blocks[row]) << "\n";
    else
      out << "  outside the blocks (patch embedding, final norm, head, loss): kept " << format_bytes(total)
          << (kinds.empty() ? "" : " = " + kinds) << "\n";
  }
  char line[256];
  std::snprintf(line, sizeof line,
                "  sum kept %s; allocated at that moment (with parameters, optimizer state, data): predicted %s, "
                "measured %s, ratio %.4f\n",
                format_bytes(kept_sum).c_str(), format_bytes(p.after_forward_total).c_str(),
                format_bytes(measured).c_str(),
                p.after_forward_total > 0 ? static_cast<double>(measured) / static_cast<double>(p.after_forward_total) : 0.0);
  out << line;
  return out.str();
}

std::string format_sampled_slots(const std::vector<vit::SampledSlot>& slots) {
  if (slots.empty()) return "sampled (as run): nothing (every matmul exact)\n";
  // Per block, "slot, slot (strategy)"; consecutive blocks with the same text share a line.
  std::map<int64_t, std::string> per_block;
  for (const vit::SampledSlot& s : slots) {
    std::string& text = per_block[s.block];
    text += (text.empty() ? "" : ", ") + s.slot + " (" + s.strategy + ")";
  }
  std::ostringstream out;
  auto it = per_block.begin();
  while (it != per_block.end()) {
    auto last = it;
    while (std::next(last) != per_block.end() && std::next(last)->first == last->first + 1 &&
           std::next(last)->second == it->second)
      ++last;
    out << "sampled (as run): block" << (last->first > it->first ? "s " : " ") << it->first;
    if (last->first > it->first) out << "-" << last->first;
    out << ": " << it->second << "\n";
    it = std::next(last);
  }
  return out.str();
}

}  // namespace tg::train
