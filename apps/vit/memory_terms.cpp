// The memory model's reporting and its step-time model: kind names, the breakdown table, and the
// relative step time of a plan (FLOPs of each technique's extra work against the exact step's).
#include <cstdio>

#include "apps/vit/memory_model.h"
#include "core/caching_allocator.h"
#include "core/memory_stats.h"

namespace tg::vit {

namespace {

using K = MemoryKind;

// FLOPs of the forward of one block's pieces (a GEMM of m·k·n is 2·m·k·n).
struct BlockFlops {
  double qkv, proj, fc1, fc2, attention;
  double linears() const { return qkv + proj + fc1 + fc2; }
  double total() const { return linears() + attention; }
};

BlockFlops block_flops(const StepSetup& s) {
  const auto N = static_cast<double>(s.batch * s.config.tokens()), D = static_cast<double>(s.config.dim),
             T = static_cast<double>(s.config.tokens()), H = D * s.config.mlp_ratio;
  return {2 * N * D * 3 * D, 2 * N * D * D, 2 * N * D * H, 2 * N * H * D, 4 * N * T * D};
}

}  // namespace

const char* memory_kind_name(MemoryKind kind) {
  static const char* const names[] = {"parameters",   "gradients",       "optimizer state",   "data",
                                      "block inputs", "norm stats",      "norm outputs",      "q, k, v",
                                      "attention out", "fc1 output",     "gelu output",       "sampled rows",
                                      "weight copies", "embed/head/loss", "forward temporaries",
                                      "gradients in flight", "recomputed"};
  static_assert(sizeof(names) / sizeof(names[0]) == static_cast<size_t>(MemoryKind::count));
  return names[static_cast<size_t>(kind)];
}

int64_t MemoryPrediction::activation_bytes() const {
  int64_t sum = 0;
  for (auto k = static_cast<size_t>(K::block_input); k <= static_cast<size_t>(K::embed_head); ++k) sum += at_peak[k];
  return sum;
}

int64_t MemoryPrediction::transient_bytes() const {
  int64_t sum = 0;
  for (auto k = static_cast<size_t>(K::transient_forward); k < static_cast<size_t>(K::count); ++k) sum += at_peak[k];
  return sum;
}

std::string format_prediction(const MemoryPrediction& p) {
  std::string out;
  char line[160];
  auto row = [&](const std::string& name, int64_t bytes) {
    std::snprintf(line, sizeof line, "  %-26s %14s %6.1f%%\n", name.c_str(), format_bytes(bytes).c_str(),
                  p.peak_bytes > 0 ? 100.0 * static_cast<double>(bytes) / static_cast<double>(p.peak_bytes) : 0.0);
    out += line;
  };
  std::snprintf(line, sizeof line, "predicted peak allocated: %s (%lld bytes), at %s\n",
                format_bytes(p.peak_bytes).c_str(), static_cast<long long>(p.peak_bytes), p.peak_moment.c_str());
  out += line;
  for (K k : {K::parameters, K::gradients, K::optimizer_state, K::data}) row(memory_kind_name(k), p.bytes(k));
  row("activations (kept)", p.activation_bytes());
  for (auto k = static_cast<size_t>(K::block_input); k <= static_cast<size_t>(K::embed_head); ++k)
    if (p.at_peak[k] > 0) row("  " + std::string(memory_kind_name(static_cast<K>(k))), p.at_peak[k]);
  row("transient", p.transient_bytes());
  for (auto k = static_cast<size_t>(K::transient_forward); k < static_cast<size_t>(K::count); ++k)
    if (p.at_peak[k] > 0) row("  " + std::string(memory_kind_name(static_cast<K>(k))), p.at_peak[k]);
  return out;
}

double relative_step_time(const StepSetup& setup, const MemoryPlan& plan) {
  const BlockFlops f = block_flops(setup);
  const VitConfig& c = setup.config;
  const auto N = static_cast<double>(setup.batch * c.tokens()), D = static_cast<double>(c.dim);
  const double patch = 2 * static_cast<double>(setup.batch * c.num_patches() * c.in_channels * c.patch_size *
                                               c.patch_size) * D;
  // The exact step: forward plus a backward of twice its FLOPs.
  const double exact = 3 * (f.total() * static_cast<double>(c.depth) + patch);
  constexpr double kNormPassCost = 500;   // GEMM-FLOP equivalents per element of a LayerNorm pass
  constexpr double kSamplerOverhead = 0.7;  // of a sampled linear's exact step share (docs/memory-planning.md)
  const double linear[] = {f.qkv, f.proj, f.fc1, f.fc2};
  double extra = 0;
  for (const BlockPlan& p : plan.blocks) {
    if (p.checkpoint) extra += f.total();  // the rerun
    if (p.recompute_gelu) extra += f.fc1;
    if (p.recompute_norms) extra += 2 * N * D * kNormPassCost;
    for (size_t t = 0; t < kPlanTargets.size(); ++t)
      if (p.sampled(t)) extra += 3 * linear[t] * kSamplerOverhead - (1 - p.ratio[t]) * linear[t];
  }
  return 1 + extra / exact;
}

int64_t batch_bytes(const VitConfig& config, int64_t batch) {
  return static_cast<int64_t>(
      CachingAllocator::round_size(static_cast<size_t>(batch * config.in_channels * config.image_size * config.image_size * 4)) +
      CachingAllocator::round_size(static_cast<size_t>(batch * 8)));
}

}  // namespace tg::vit
