// The sampled backward strategies: WTA-CRS (winners plus importance-weighted draws), CRS
// (draws only), top-k (biased ablation) and WTA-WOR (take-all rows plus systematic sampling
// without replacement: k distinct rows), per docs/WTACRS.md. In forward a node's operand
// X [batch, K, D] is reduced to k sampled rows per item (plus i32 indices and f32 weights);
// in backward Gᵀ·X is estimated from them with one GEMM over k instead of K. The sampling
// probabilities use ||x_i|| times a per-position EMA of ||g_i|| from earlier backward passes.
// Everything runs on the tensors' device with no host synchronisation; on CUDA the forward part
// (scores, selection, gather) and backward's proxy refresh run on side streams
// (core/side_work.h), off the critical path.
#pragma once

#include <memory>

#include "ops/matmul/exact.h"
#include "ops/matmul/sampling.h"
#include "ops/matmul/strategy.h"

namespace tg {

// The sampler's variant of a sampled strategy kind (wta_crs, crs or topk).
SamplingVariant sampling_variant(StrategyKind kind);

// The budget of WTACRS.md §2: k = min(max(floor(ratio * K), k_min), K).
int64_t sample_budget(int64_t rows, double ratio, int64_t k_min);

// Whether sampled nodes select their rows and refresh their proxy on CUDA side streams (default
// on); off, that runs on the current stream like every other op. Process-wide; the results are the
// same bits.
void set_cuda_sampler_side_stream(bool on);
bool cuda_sampler_side_stream();

class SamplingStrategy final : public BackwardStrategy {
 public:
  // config.kind is wta_crs, crs, topk or wta_wor.
  SamplingStrategy(const StrategyConfig& config, uint64_t node_id);
  std::string name() const override;
  // Exact (the operand itself) when the budget covers every row (ratio 1, or K <= k_min).
  std::unique_ptr<SavedOperand> save(const Tensor& operand, int64_t period = 0,
                                     bool gradient_rows_sum_to_zero = false) override;

  // The gradient-norm proxy by position (undefined until the first save; ones before the
  // first backward), for tests and reports.
  const Tensor& proxy() const { return proxy_; }

  // "step" (i64 [1]: forward passes so far, which key the draws) and, once it exists, "proxy".
  std::map<std::string, Tensor> state_dict() const override;
  void load_state_dict(const std::map<std::string, Tensor>& state) override;

 private:
  SamplingVariant variant_;
  StrategyConfig config_;
  uint64_t node_id_;
  // i64 [1]: the saves that sampled so far, which with the seed and node keys the draws. On the
  // operand's device once a save ran, where the sampler reads and advances it (so a CUDA graph's
  // replays draw new numbers); on the host after load_state_dict until then.
  Tensor step_;
  Tensor proxy_;       // f32 [P] on the operand's device
  // The side section of the last backward's proxy refresh (core/side_work.h ticket; 0: none): the
  // next save joins it first.
  std::shared_ptr<uint64_t> proxy_refresh_ = std::make_shared<uint64_t>(0);
  ExactStrategy exact_;
};

// The factory of the strategy table's sampled rows (config.kind says which).
std::shared_ptr<BackwardStrategy> make_sampling_strategy(const StrategyConfig& config, uint64_t node_id);

}  // namespace tg
