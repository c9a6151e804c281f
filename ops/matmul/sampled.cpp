// Sampled strategies (WTA-CRS, CRS, top-k): what a node keeps and how it contracts.
#include "ops/matmul/sampled.h"

#include <atomic>
#include <cmath>

#include "autograd/grad_mode.h"
#include "core/side_work.h"
#include "ops/elementwise.h"
#include "ops/matmul/gemm.h"
#include "ops/reduce.h"
#include "ops/precision.h"

namespace tg {

namespace {

// What a sampled node keeps: k rows of X per item, their indices and importance weights. The
// proxy handle lets backward refresh the per-position gradient norms from the full G.
class SampledOperand final : public SavedOperand {
 public:
  SampledOperand(Tensor rows, RowSample sample, Tensor proxy, double beta, std::shared_ptr<uint64_t> refresh)
      : rows_(std::move(rows)), sample_(std::move(sample)), proxy_(std::move(proxy)), beta_(beta),
        refresh_(std::move(refresh)) {}

  // The weighted gather of G's kept rows starts on a side lane, beside the node's dX GEMM. On
  // the current stream it waits for contract(), in the single-stream order the memory model
  // follows.
  void prepare(const Tensor& grad) override {
    if (!grad.device().is_cuda() || !cuda_sampler_side_stream()) return;
    join_backward_inputs();
    SideWork side(grad.device(), true);
    side.hold(grad);
    scaled_ = gather_scaled_rows(grad, sample_.indices, sample_.weights);  // [batch, k, E]
    gather_ = side.ticket();
  }

  Tensor contract(const Tensor& grad, std::optional<DType> out_dtype) override {
    Tensor scaled;
    if (scaled_.defined()) {  // prepared: only that section needs joining
      join_side_work(rows_.device(), gather_);
      scaled = std::move(scaled_);
    } else {
      join_backward_inputs();
      scaled = gather_scaled_rows(grad, sample_.indices, sample_.weights);
    }
    if (proxy_.defined()) {
      // The proxy serves the next forward's selection: it is refreshed beside this backward.
      // Holding G keeps its memory from reuse, and from being accumulated into in place (the
      // engine writes in place only into gradients nobody else holds).
      SideWork side(grad.device(), cuda_sampler_side_stream());
      side.hold(grad);
      side.hold(proxy_);
      update_row_norm_ema(proxy_, grad, beta_);
      *refresh_ = side.ticket();
    }
    // Σ_slots w·g_idxᵀ x_idx: the scaled rows of G, then one GEMM over the k slots.
    return gemm(scaled, /*trans_a=*/true, rows_.to(grad.dtype()), /*trans_b=*/false, Tensor(), out_dtype);  // [batch, E, D]
  }

  // Exactly |rows|·D·sizeof(dtype) + 8·|rows| per item: the rows, i32 indices, f32 weights.
  size_t saved_bytes() const override { return rows_.nbytes() + sample_.indices.nbytes() + sample_.weights.nbytes(); }
  // Each is a tensor of its own (gathered, or drawn): its storage is its bytes.
  void saved_storages(std::vector<const Storage*>& out) const override {
    for (const Tensor* t : {&rows_, &sample_.indices, &sample_.weights}) out.push_back(t->storage().get());
  }

 private:
  Tensor rows_;  // [batch, k, D] in the operand's dtype or the saved dtype
  RowSample sample_;
  Tensor proxy_;  // undefined when the strategy uses no proxy
  double beta_;
  std::shared_ptr<uint64_t> refresh_;  // the strategy's: the side section refreshing the proxy
  Tensor scaled_;                      // prepare()'s gather of G, until contract() takes it
  uint64_t gather_ = 0;                // the side section of that gather

  // The rows, indices and weights may come from a side stream. Joining every pending section
  // also ends the previous node's proxy refresh, which releases its G before the engine may want
  // to accumulate into that memory in place (a residual stream's gradient).
  void join_backward_inputs() const { join_side_work(rows_.device()); }
};

std::atomic<bool> g_cuda_sampler_side_stream{true};

}  // namespace

void set_cuda_sampler_side_stream(bool on) { g_cuda_sampler_side_stream.store(on); }

bool cuda_sampler_side_stream() { return g_cuda_sampler_side_stream.load(); }

SamplingVariant sampling_variant(StrategyKind kind) {
  switch (kind) {
    case StrategyKind::wta_crs: return SamplingVariant::wta_crs;
    case StrategyKind::crs: return SamplingVariant::crs;
    case StrategyKind::topk: return SamplingVariant::topk;
    case StrategyKind::wta_wor: return SamplingVariant::wta_wor;
    case StrategyKind::exact: break;
  }
  TG_THROW(ValueError, "backward strategy ", strategy_info(kind).name, " is not a sampled strategy");
}

int64_t sample_budget(int64_t rows, double ratio, int64_t k_min) {
  const auto k = static_cast<int64_t>(std::floor(ratio * static_cast<double>(rows)));
  return std::min(std::max(k, k_min), rows);
}

SamplingStrategy::SamplingStrategy(const StrategyConfig& config, uint64_t node_id)
    : variant_(sampling_variant(config.kind)), config_(config), node_id_(node_id) {}

std::string SamplingStrategy::name() const { return strategy_info(config_.kind).name; }

std::unique_ptr<SavedOperand> SamplingStrategy::save(const Tensor& input, int64_t period,
                                                    bool gradient_rows_sum_to_zero) {
  TG_CHECK(input.dim() == 3, ShapeError, name(), ": expected an operand [batch, K, D], got shape ",
           input.shape().str());
  const int64_t batch = input.size(0), rows = input.size(1);
  const int64_t k = sample_budget(rows, config_.ratio, config_.k_min);
  if (k >= rows) return exact_.save(input, period);
  NoGradGuard no_grad;
  // The last backward's proxy refresh, if still pending (only that: joining every section here would
  // make each selection wait for the previous layers').
  join_side_work(input.device(), *proxy_refresh_);
  if (!step_.defined()) step_ = zeros({1}, DType::i64, input.device());
  else if (step_.device() != input.device()) step_ = step_.to(input.device());
  const bool use_proxy = config_.proxy == ProxyKind::position_ema;
  if (use_proxy) {
    const int64_t positions = period > 0 ? period : rows;
    TG_CHECK((batch * rows) % positions == 0, ShapeError, name(), ": ", batch * rows,
             " rows are not a whole number of periods of ", positions, " positions");
    if (!proxy_.defined() || proxy_.numel() != positions)
      proxy_ = ones({positions}, DType::f32, input.device());  // no gradient seen yet: g ≡ 1
    else if (proxy_.device() != input.device())
      proxy_ = proxy_.to(input.device());  // restored from a checkpoint on the host
  }
  // Nothing of this layer's forward waits for the selection: on CUDA it runs beside the next
  // layers' work. The operand is the current stream's; it stays allocated until the join.
  SideWork side(input.device(), cuda_sampler_side_stream());
  side.hold(input);
  // Centring is exact when the gradients' rows sum to zero, and the sampler then sees only the
  // rows' differences (a transient copy of the operand, dead once its rows are gathered).
  const Tensor operand = gradient_rows_sum_to_zero ? sub(input, mean(input, {1}, /*keepdim=*/true)) : input;
  // s_r = ||x_r||·ĝ[r % P]: row r holds token position r % P.
  const Tensor scores = row_norms(operand, use_proxy ? proxy_ : Tensor());  // f32 [batch, K]
  // The sampler's own Philox key, so no node's draws reuse the numbers the data augmentation
  // (key = seed) takes for the same counters.
  RowSample sample =
      sample_rows(scores, {k, config_.alpha, variant_}, stream_seed(config_.seed, kSamplingStream), node_id_ << 32, step_);
  Tensor kept = gather_rows(operand, sample.indices);  // [batch, k, D]
  if (const std::optional<DType>& saved = precision_policy().saved_dtype) kept = kept.to(*saved);
  return std::make_unique<SampledOperand>(std::move(kept), std::move(sample), use_proxy ? proxy_ : Tensor(),
                                          config_.ema_beta, proxy_refresh_);
}

std::map<std::string, Tensor> SamplingStrategy::state_dict() const {
  // The side streams advance the step and refresh the proxy.
  if (step_.defined()) join_side_work(step_.device());
  std::map<std::string, Tensor> state{
      {"step", step_.defined() ? step_.to(Device::cpu()).clone() : from_vector<int64_t>({0}, {1})}};
  if (proxy_.defined()) state["proxy"] = proxy_;
  return state;
}

void SamplingStrategy::load_state_dict(const std::map<std::string, Tensor>& state) {
  const auto step = state.find("step");
  TG_CHECK(step != state.end(), ValueError, name(), " load_state_dict: missing key 'step'");
  TG_CHECK(step->second.dtype() == DType::i64 && step->second.numel() == 1, ValueError, name(),
           " load_state_dict: 'step' must be one i64, got ", dtype_name(step->second.dtype()), " of shape ",
           step->second.shape().str());
  const auto proxy = state.find("proxy");
  if (proxy != state.end())
    TG_CHECK(proxy->second.dtype() == DType::f32 && proxy->second.dim() == 1, ValueError, name(),
             " load_state_dict: 'proxy' must be f32 [P], got ", dtype_name(proxy->second.dtype()), " of shape ",
             proxy->second.shape().str());
  step_ = step->second.to(Device::cpu()).raw_reshape({1}).clone();
  proxy_ = proxy != state.end() ? proxy->second.clone() : Tensor();
}

std::shared_ptr<BackwardStrategy> make_sampling_strategy(const StrategyConfig& config, uint64_t node_id) {
  return std::make_shared<SamplingStrategy>(config, node_id);
}

}  // namespace tg
