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
  std::vector<const Node*> stack;
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
    for (const Edge& edge : node->next_edges())
      if (edge.node) stack.push_back(edge.node.get());
  }
  std::vector<SavedBytes> out;
  for (auto& [kind, group] : groups) out.push_back(group);
  std::stable_sort(out.begin(), out.end(), [](const SavedBytes& a, const SavedBytes& b) { return a.bytes > b.bytes; });
  return out;
}

std::string format_saved_bytes(const std::vector<SavedBytes>& groups, int64_t allocated_bytes) {
  int64_t total = 0;
  for (const SavedBytes& g : groups) total += g.bytes;
  std::string out = "Saved for backward at the peak (after forward), by node kind:\n";
  char line[160];
  std::snprintf(line, sizeof line, "  %-22s %6s %14s %7s\n", "kind", "nodes", "saved", "share");
  out += line;
  for (const SavedBytes& g : groups) {
    if (g.bytes == 0) continue;
    std::snprintf(line, sizeof line, "  %-22s %6lld %14s %6.1f%%\n", g.kind.c_str(), static_cast<long long>(g.nodes),
                  format_bytes(g.bytes).c_str(), total > 0 ? 100.0 * static_cast<double>(g.bytes) / total : 0.0);
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-22s %6s %14s\n", "sum", "", format_bytes(total).c_str());
  out += line;
  out += "  (a tensor saved by several nodes counts in each, a saved view counts its whole storage; allocated on\n"
         "  the device at that moment, each storage once, with parameters, optimizer state and data: " +
         format_bytes(allocated_bytes) + ")\n";
  int64_t empty_nodes = 0;
  for (const SavedBytes& g : groups)
    if (g.bytes == 0) empty_nodes += g.nodes;
  if (empty_nodes > 0) out += "  (" + std::to_string(empty_nodes) + " further nodes save nothing)\n";
  return out;
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
