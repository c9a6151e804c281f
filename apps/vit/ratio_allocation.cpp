// Per-layer WTA-CRS ratios from the predicted variance: the recording strategy of the
// calibration, the variance prediction, and the allocation under the uniform plan's memory.
#include "apps/vit/ratio_allocation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "ops/elementwise.h"
#include "ops/matmul/exact.h"
#include "ops/matmul/sampled.h"
#include "ops/matmul/sampling.h"
#include "ops/reduce.h"

namespace tg::vit {

// An exact strategy whose saved operands record ||x_j|| in forward and ||g_j||, ||Gᵀ·X||² in
// backward (on the device; RowStatsRecording::statistics copies them out).
class RowStatsRecording::Recorder final : public BackwardStrategy {
 public:
  struct DevicePass {
    Tensor x_norms, g_norms, product_squared;  // f32 [1, K], f32 [1, K], f32 scalar
    int64_t period;
  };

  std::string name() const override { return "exact"; }
  std::unique_ptr<SavedOperand> save(const Tensor& operand, int64_t period, bool gradient_rows_sum_to_zero) override {
    TG_INTERNAL_ASSERT(operand.dim() == 3 && operand.size(0) == 1,
                       "RowStatsRecording: a linear's operand is one item [1, K, D], got ", operand.shape().str());
    return std::make_unique<Operand>(exact_.save(operand, period, gradient_rows_sum_to_zero), row_norms(operand), period,
                                     passes_);
  }
  const std::vector<DevicePass>& passes() const { return *passes_; }

 private:
  class Operand final : public SavedOperand {
   public:
    Operand(std::unique_ptr<SavedOperand> exact, Tensor x_norms, int64_t period,
            std::shared_ptr<std::vector<DevicePass>> passes)
        : exact_(std::move(exact)), x_norms_(std::move(x_norms)), period_(period), passes_(std::move(passes)) {}
    Tensor contract(const Tensor& grad, std::optional<DType> out_dtype) override {
      Tensor product = exact_->contract(grad, out_dtype);
      record(grad, product);
      return product;
    }
    ProductAndRowSums contract_with_grad_sums(const Tensor& grad, std::optional<DType> out_dtype) override {
      ProductAndRowSums both = exact_->contract_with_grad_sums(grad, out_dtype);
      record(grad, both.product);
      return both;
    }
    void prepare(const Tensor& grad) override { exact_->prepare(grad); }
    size_t saved_bytes() const override { return exact_->saved_bytes() + x_norms_.nbytes(); }
    void saved_storages(std::vector<const Storage*>& out) const override {
      exact_->saved_storages(out);
      out.push_back(x_norms_.storage().get());
    }

   private:
    void record(const Tensor& grad, const Tensor& product) {
      const Tensor c = product.to(DType::f32);
      passes_->push_back({x_norms_, row_norms(grad), sum(mul(c, c)), period_});
    }
    std::unique_ptr<SavedOperand> exact_;
    Tensor x_norms_;
    int64_t period_;
    std::shared_ptr<std::vector<DevicePass>> passes_;
  };

  ExactStrategy exact_;
  std::shared_ptr<std::vector<DevicePass>> passes_ = std::make_shared<std::vector<DevicePass>>();
};

RowStatsRecording::RowStatsRecording(VisionTransformer& model) : depth_(model.blocks.size()) {
  for (size_t b = 0; b < model.blocks.size(); ++b)
    for (const nn::MatmulSlot& slot : model.blocks[b]->matmul_slots()) {
      const auto t = std::find(kPlanTargets.begin(), kPlanTargets.end(), slot.target);
      if (t == kPlanTargets.end()) continue;  // the attention matmuls keep their strategies
      auto recorder = std::make_shared<Recorder>();
      slots_.push_back({slot.strategy, *slot.strategy, recorder, b, static_cast<size_t>(t - kPlanTargets.begin())});
      *slot.strategy = recorder;
    }
}

RowStatsRecording::~RowStatsRecording() {
  for (Slot& slot : slots_) *slot.strategy = slot.previous;
}

RowStatistics RowStatsRecording::statistics() const {
  RowStatistics out(depth_);
  for (const Slot& slot : slots_)
    for (const Recorder::DevicePass& pass : slot.recorder->passes())
      out[slot.block][slot.target].push_back({pass.x_norms.to(Device::cpu()).to_vector<float>(),
                                              pass.g_norms.to(Device::cpu()).to_vector<float>(), pass.period,
                                              pass.product_squared.item()});
  return out;
}

namespace {

// The scores the strategy samples by: ||x_j|| times the proxy of ||g_j||, here the mean of ||g||
// over the rows of j's token position (what the position EMA converges to), or ||x_j|| alone.
std::vector<float> sampling_scores(const RecordedPass& pass, ProxyKind proxy) {
  std::vector<float> scores = pass.x_norms;
  if (proxy == ProxyKind::none) return scores;
  const size_t K = scores.size();
  const size_t P = pass.period > 0 ? static_cast<size_t>(pass.period) : K;
  std::vector<double> sum(P, 0.0);
  std::vector<int64_t> count(P, 0);
  for (size_t j = 0; j < K; ++j) {
    sum[j % P] += pass.g_norms[j];
    ++count[j % P];
  }
  for (size_t j = 0; j < K; ++j)
    scores[j] = static_cast<float>(scores[j] * (sum[j % P] / static_cast<double>(count[j % P])));
  return scores;
}

}  // namespace

double predicted_relative_mse(const std::vector<RecordedPass>& passes, double ratio, const StrategyConfig& sampling) {
  TG_CHECK(sampling.kind == StrategyKind::wta_crs || sampling.kind == StrategyKind::crs, ValueError,
           "predicted_relative_mse: expected an i.i.d. sampled strategy (wta-crs or crs), got ",
           strategy_info(sampling.kind).name);
  TG_CHECK(!passes.empty(), ValueError, "predicted_relative_mse: no recorded backward pass");
  double mse = 0, norm = 0;
  for (const RecordedPass& pass : passes) {
    const auto K = static_cast<int64_t>(pass.x_norms.size());
    TG_CHECK(pass.g_norms.size() == pass.x_norms.size(), ShapeError, "predicted_relative_mse: ", K,
             " row norms of x but ", pass.g_norms.size(), " of g");
    TG_CHECK(pass.product_squared > 0, ValueError,
             "predicted_relative_mse: a recorded pass has ||G^T X|| = 0; expected a gradient with signal");
    norm += pass.product_squared;
    const int64_t k = sample_budget(K, ratio, sampling.k_min);
    if (k >= K) continue;
    const SamplingPlan plan =
        plan_sample(sampling_scores(pass, sampling.proxy), {k, sampling.alpha, sampling_variant(sampling.kind)});
    std::vector<double> x_squared(pass.x_norms.begin(), pass.x_norms.end()), g_squared(pass.g_norms.begin(), pass.g_norms.end());
    for (double& v : x_squared) v *= v;
    for (double& v : g_squared) v *= v;
    mse += predicted_mse(plan, x_squared, g_squared, /*rest_squared=*/0.0);
  }
  return mse / norm;
}

std::vector<double> allocation_ratios() {
  std::vector<double> ratios;
  for (int step = 1; step < 20; ++step) ratios.push_back(step / 20.0);
  return ratios;
}

namespace {

struct Choice {
  double ratio;   // 0: exact
  int64_t bytes;  // kept after forward, relative to the slot exact (sampling usually saves: < 0)
  double mse;
};

struct SlotChoices {
  size_t block, target;
  std::vector<Choice> choices;  // [0]: exact
  size_t uniform;               // the uniform plan's choice
};

int64_t kept_bytes(const MemoryPrediction& prediction, size_t block) {
  int64_t sum = 0;
  for (int64_t bytes : prediction.after_forward[block]) sum += bytes;
  return sum;
}

int64_t total_kept(const MemoryPrediction& prediction) {
  int64_t sum = 0;
  for (size_t b = 0; b + 1 < prediction.after_forward.size(); ++b) sum += kept_bytes(prediction, b);
  return sum;
}

// The choice per slot that minimises mse + lambda * bytes (ties: fewer bytes).
std::vector<size_t> choose(const std::vector<SlotChoices>& slots, double lambda) {
  std::vector<size_t> picked;
  for (const SlotChoices& slot : slots) {
    size_t best = 0;
    for (size_t c = 1; c < slot.choices.size(); ++c) {
      const Choice &a = slot.choices[c], &b = slot.choices[best];
      const double ca = a.mse + lambda * static_cast<double>(a.bytes), cb = b.mse + lambda * static_cast<double>(b.bytes);
      if (ca < cb || (ca == cb && a.bytes < b.bytes)) best = c;
    }
    picked.push_back(best);
  }
  return picked;
}

template <class Field>
double sum_of(const std::vector<SlotChoices>& slots, const std::vector<size_t>& picked, Field field) {
  double sum = 0;
  for (size_t s = 0; s < slots.size(); ++s) sum += static_cast<double>(field(slots[s].choices[picked[s]]));
  return sum;
}

// The least summed mse with summed bytes <= budget: the Lagrangian choice at the smallest lambda
// that fits, then single-slot upgrades (best mse saved per byte) while the budget allows.
std::vector<size_t> allocate(const std::vector<SlotChoices>& slots, double budget) {
  auto bytes = [&](const std::vector<size_t>& picked) { return sum_of(slots, picked, [](const Choice& c) { return c.bytes; }); };
  double low = 0, high = 1e-12;
  while (bytes(choose(slots, high)) > budget && high < 1e30) high *= 4;
  for (int iteration = 0; iteration < 200; ++iteration) {
    const double middle = 0.5 * (low + high);
    (bytes(choose(slots, middle)) <= budget ? high : low) = middle;
  }
  std::vector<size_t> picked = choose(slots, high);
  for (;;) {
    const double slack = budget - bytes(picked);
    size_t best_slot = slots.size(), best_choice = 0;
    double best_gain = 0;
    for (size_t s = 0; s < slots.size(); ++s) {
      const Choice& now = slots[s].choices[picked[s]];
      for (size_t c = 0; c < slots[s].choices.size(); ++c) {
        const Choice& next = slots[s].choices[c];
        const double extra = static_cast<double>(next.bytes - now.bytes), saved = now.mse - next.mse;
        if (saved <= 0 || extra > slack) continue;
        const double gain = extra <= 0 ? std::numeric_limits<double>::infinity() : saved / extra;
        if (gain > best_gain) best_gain = gain, best_slot = s, best_choice = c;
      }
    }
    if (best_slot == slots.size()) return picked;
    picked[best_slot] = best_choice;
  }
}

}  // namespace

RatioAllocation allocate_ratios(const StepSetup& setup, const MemoryPlan& uniform,
                                const std::function<double(size_t block, size_t target, double ratio)>& rel_mse) {
  check_plan(uniform, setup.config);
  // Bytes kept by a block depend on its own plan only: predict each distinct (block plan, target,
  // ratio) once, in the first block that has that plan.
  std::map<std::vector<double>, int64_t> kept_memo;
  auto block_kept = [&](size_t block, const BlockPlan& plan) {
    std::vector<double> key{double(plan.checkpoint), double(plan.recompute_norms), double(plan.recompute_gelu)};
    key.insert(key.end(), plan.ratio.begin(), plan.ratio.end());
    const auto it = kept_memo.find(key);
    if (it != kept_memo.end()) return it->second;
    MemoryPlan trial = uniform;
    trial.blocks[block] = plan;
    const int64_t bytes = kept_bytes(predict_memory(setup, trial, AllocatorModel::rounding), block);
    kept_memo.emplace(std::move(key), bytes);
    return bytes;
  };

  std::vector<SlotChoices> slots;
  for (size_t b = 0; b < uniform.blocks.size(); ++b)
    for (size_t t = 0; t < kPlanTargets.size(); ++t) {
      if (!uniform.blocks[b].sampled(t)) continue;
      BlockPlan plan = uniform.blocks[b];
      plan.ratio[t] = 0;
      const int64_t exact_bytes = block_kept(b, plan);
      SlotChoices slot{b, t, {{0, 0, 0}}, 0};
      std::vector<double> ratios = allocation_ratios();
      const double uniform_ratio = uniform.blocks[b].ratio[t];
      if (std::find(ratios.begin(), ratios.end(), uniform_ratio) == ratios.end()) ratios.push_back(uniform_ratio);
      for (double ratio : ratios) {
        plan.ratio[t] = ratio;
        const double mse = rel_mse(b, t, ratio);
        TG_CHECK(mse >= 0 && std::isfinite(mse), ValueError, "allocate_ratios: block ", b, " ",
                 nn::target_name(kPlanTargets[t]), " at ratio ", ratio, ": expected a finite relative MSE >= 0, got ", mse);
        if (ratio == uniform_ratio) slot.uniform = slot.choices.size();
        slot.choices.push_back({ratio, block_kept(b, plan) - exact_bytes, mse});
      }
      slots.push_back(std::move(slot));
    }

  auto plan_of = [&](const std::vector<size_t>& picked) {
    MemoryPlan plan = uniform;
    for (size_t s = 0; s < slots.size(); ++s) plan.blocks[slots[s].block].ratio[slots[s].target] = slots[s].choices[picked[s]].ratio;
    return plan;
  };
  std::vector<size_t> uniform_picks;
  for (const SlotChoices& slot : slots) uniform_picks.push_back(slot.uniform);
  auto mse_of = [&](const std::vector<size_t>& picked) { return sum_of(slots, picked, [](const Choice& c) { return c.mse; }); };

  RatioAllocation out;
  out.uniform_rel_mse = mse_of(uniform_picks);
  const MemoryPrediction uniform_prediction = predict_memory(setup, uniform);
  out.uniform_peak = uniform_prediction.peak_bytes;
  out.uniform_kept_bytes = total_kept(uniform_prediction);
  // The kept bytes add up over blocks, the peak need not: tighten the budget by any excess of the
  // predicted peak and allocate again; the uniform plan itself is the fallback.
  double budget = sum_of(slots, uniform_picks, [](const Choice& c) { return c.bytes; });
  std::vector<size_t> picked = uniform_picks;
  for (int attempt = 0; attempt < 4; ++attempt) {
    const std::vector<size_t> candidate = allocate(slots, budget);
    const MemoryPrediction prediction = predict_memory(setup, plan_of(candidate));
    if (prediction.peak_bytes <= out.uniform_peak && mse_of(candidate) <= out.uniform_rel_mse) {
      picked = candidate;
      break;
    }
    budget -= static_cast<double>(std::max<int64_t>(prediction.peak_bytes - out.uniform_peak, 512));
  }
  out.plan = plan_of(picked);
  out.allocated_rel_mse = mse_of(picked);
  const MemoryPrediction allocated = predict_memory(setup, out.plan);
  out.allocated_peak = allocated.peak_bytes;
  out.allocated_kept_bytes = total_kept(allocated);
  return out;
}

}  // namespace tg::vit
