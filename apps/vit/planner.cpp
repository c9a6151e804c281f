// The planner's ladder, its enumeration of non-increasing rung assignments, and the batch search.
#include "apps/vit/planner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

#include "core/memory_stats.h"

namespace tg::vit {

namespace {

struct Rung {
  BlockPlan plan;
  bool samples;
};

// The ladder, least memory-saving first (planner.h).
std::vector<Rung> ladder(const PlannerOptions& o) {
  BlockPlan keep, norms, gelu, ckpt, ckpt_gelu;
  norms.recompute_norms = true;
  gelu = norms;
  gelu.recompute_gelu = true;
  ckpt.checkpoint = true;
  ckpt_gelu = gelu;
  ckpt_gelu.checkpoint = true;
  BlockPlan gelu_wta = gelu, ckpt_wta = ckpt_gelu;
  gelu_wta.ratio[3] = ckpt_wta.ratio[3] = o.sampling_ratio;
  std::vector<Rung> rungs = {{keep, false}, {norms, false}, {gelu, false}};
  if (o.allow_sampling) rungs.push_back({gelu_wta, true});
  rungs.push_back({ckpt, false});
  rungs.push_back({ckpt_gelu, false});
  if (o.allow_sampling) rungs.push_back({ckpt_wta, true});
  return rungs;
}

// Calls `visit` for every assignment of rungs to blocks that does not increase with the block
// index (block 0 on the highest rung), restricted to exact rungs or not.
void for_each_plan(const StepSetup& setup, const std::vector<Rung>& rungs, bool with_sampling,
                   const std::function<void(const MemoryPlan&, bool)>& visit) {
  const auto depth = static_cast<size_t>(setup.config.depth);
  std::vector<size_t> allowed;
  for (size_t r = 0; r < rungs.size(); ++r)
    if (with_sampling || !rungs[r].samples) allowed.push_back(r);
  MemoryPlan plan;
  plan.blocks.resize(depth);
  std::vector<size_t> level(depth);
  std::function<void(size_t, size_t)> fill = [&](size_t block, size_t max_level) {
    if (block == depth) {
      bool samples = false;
      for (size_t b = 0; b < depth; ++b) {
        plan.blocks[b] = rungs[allowed[level[b]]].plan;
        samples = samples || rungs[allowed[level[b]]].samples;
      }
      visit(plan, samples);
      return;
    }
    for (size_t l = 0; l <= max_level; ++l) {
      level[block] = l;
      fill(block + 1, l);
    }
  };
  fill(0, allowed.size() - 1);
}

// describe(plan) on one line: "blocks 0-5: checkpoint; blocks 6-11: keep".
std::string one_line(const MemoryPlan& plan) {
  std::string text = describe(plan), out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') {
      if (i + 1 < text.size()) out += ";";
    } else if (!(text[i] == ' ' && (out.empty() || out.back() == ' '))) {
      out += text[i];
    }
  }
  return out;
}

bool better(const PlanChoice& a, const PlanChoice& b) {
  if (a.relative_time != b.relative_time) return a.relative_time < b.relative_time;
  return a.prediction.peak_bytes < b.prediction.peak_bytes;
}

// What the plans may predict: the budget less the headroom.
int64_t usable_bytes(const PlannerOptions& o) {
  TG_CHECK(o.headroom >= 0 && o.headroom < 1, ValueError, "planner: expected a headroom in [0, 1), got ", o.headroom);
  return o.budget_bytes - static_cast<int64_t>(std::ceil(static_cast<double>(o.budget_bytes) * o.headroom));
}

// One phase of the search (exact rungs only, or all): every assignment's peak by the rounding
// model (fast) and relative time; the smallest peak seen; and the fitting plans by increasing
// cost, each then checked with the caching model (a reused cached block that is not split can
// take a plan over the budget) until one fits.
bool search(const StepSetup& setup, const PlannerOptions& o, bool with_sampling, PlanChoice& best,
            PlanChoice& smallest) {
  const int64_t limit = usable_bytes(o);
  std::vector<PlanChoice> fitting;
  bool any = false;
  for_each_plan(setup, ladder(o), with_sampling, [&](const MemoryPlan& plan, bool samples) {
    PlanChoice c{plan, predict_memory(setup, plan, AllocatorModel::rounding),
                 o.step_time ? o.step_time(plan) : relative_step_time(setup, plan), samples};
    if (!any || c.prediction.peak_bytes < smallest.prediction.peak_bytes) smallest = c;
    any = true;
    if (c.prediction.peak_bytes <= limit) fitting.push_back(std::move(c));
  });
  std::sort(fitting.begin(), fitting.end(), better);
  constexpr size_t kChecks = 64;
  for (size_t i = 0; i < fitting.size() && i < kChecks; ++i) {
    fitting[i].prediction = predict_memory(setup, fitting[i].plan, AllocatorModel::caching);
    if (fitting[i].prediction.peak_bytes <= limit) {
      best = fitting[i];
      return true;
    }
  }
  return false;
}

// "; plans must predict at most X (... the budget less its Y% headroom ...)", or nothing without
// headroom.
std::string headroom_note(const PlannerOptions& o) {
  if (o.headroom == 0) return "";
  const int64_t limit = usable_bytes(o);
  char percent[32];
  std::snprintf(percent, sizeof percent, "%.1f%%", 100 * o.headroom);
  return "; plans must predict at most " + format_bytes(limit) + " (" + std::to_string(limit) +
         " bytes: the budget less its " + percent + " headroom for what the memory model does not see)";
}

}  // namespace

PlanChoice choose_plan(const StepSetup& setup, const PlannerOptions& o) {
  TG_CHECK(o.sampling_ratio > 0 && o.sampling_ratio <= 1, ValueError, "planner: expected a sampling ratio in (0, 1], got ",
           o.sampling_ratio);
  PlanChoice best, smallest;
  if (search(setup, o, false, best, smallest)) return best;
  if (o.allow_sampling && search(setup, o, true, best, smallest)) return best;
  smallest.prediction = predict_memory(setup, smallest.plan, AllocatorModel::caching);
  TG_THROW(ValueError, "--memory-budget ", format_bytes(o.budget_bytes), " (", o.budget_bytes,
           " bytes) cannot be met at batch ", setup.batch, ": the smallest achievable peak is ",
           format_bytes(smallest.prediction.peak_bytes), " (", smallest.prediction.peak_bytes, " bytes, with ",
           one_line(smallest.plan), ")", headroom_note(o),
           o.allow_sampling ? "" : "; sampling is not allowed (--no-sampling)");
}

PlanChoice smallest_plan(const StepSetup& setup, const PlannerOptions& o) {
  PlanChoice best, smallest;
  PlannerOptions unlimited = o;
  unlimited.budget_bytes = -1;  // nothing fits: only the smallest is tracked
  search(setup, unlimited, o.allow_sampling, best, smallest);
  smallest.prediction = predict_memory(setup, smallest.plan, AllocatorModel::caching);
  return smallest;
}

MaxBatch find_max_batch(const StepSetup& setup, const PlannerOptions& o, int64_t limit) {
  StepSetup s = setup;
  auto fits = [&](int64_t batch, PlanChoice* choice) {
    s.batch = batch;
    try {
      PlanChoice c = choose_plan(s, o);
      if (choice) *choice = c;
      return true;
    } catch (const ValueError&) {
      return false;
    }
  };
  MaxBatch result;
  s.batch = 1;
  if (!fits(1, &result.choice)) choose_plan(s, o);  // throws, stating batch 1's smallest peak
  // Doubling, then bisection between the last batch that fits and the first that does not.
  int64_t good = 1, bad = 2;
  while (bad <= limit && fits(bad, nullptr)) {
    good = bad;
    bad *= 2;
  }
  if (bad > limit) bad = limit + 1;
  while (bad - good > 1) {
    const int64_t mid = good + (bad - good) / 2;
    (fits(mid, nullptr) ? good : bad) = mid;
  }
  result.batch = good;
  fits(good, &result.choice);
  return result;
}

}  // namespace tg::vit
