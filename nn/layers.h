// Layers of a pre-norm transformer: Linear (backward strategy per layer), LayerNorm, Mlp
// (fc1, GELU, fc2), multi-head self-attention (fused qkv linear, attention matmuls with their
// own strategies, softmax, proj) and Block. Parameter names and layouts follow timm's ViT so
// checkpoints interchange (Linear weight [out, in]; "attn.qkv.weight", "mlp.fc1.bias", ...).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"
#include "ops/matmul/exact.h"
#include "ops/matmul/strategy.h"

namespace tg::nn {

// Parameter fills, PyTorch's nn.init / timm's names. trunc_normal_: N(0, std) truncated to
// [low, high] (values outside are redrawn). The bounds are absolute, as in timm: with std 0.02
// and the default ±2 (100 std) nothing is ever cut. normal_: N(0, std). uniform_: U(-bound, bound).
void trunc_normal_(const Tensor& t, double std, Generator& generator, double low = -2, double high = 2);
void normal_(const Tensor& t, double std, Generator& generator);
void uniform_(const Tensor& t, double bound, Generator& generator);

class LayerNorm;

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Device device, Generator& generator);
  Tensor forward(const Tensor& x) const;
  // forward(norm.forward(x)), as one node that recomputes the norm's output in backward instead
  // of keeping it (ops/matmul/norm_linear.h) when this layer's strategy is exact; a sampled
  // strategy keeps its rows of the norm's output as usual. The same values either way.
  Tensor forward_normed(const LayerNorm& norm, const Tensor& x) const;
  // The strategy forming the weight gradient (ExactStrategy unless set).
  void set_backward_strategy(std::shared_ptr<BackwardStrategy> strategy) { strategy_ = std::move(strategy); }
  const std::shared_ptr<BackwardStrategy>& backward_strategy() const { return strategy_; }
  std::shared_ptr<BackwardStrategy>& backward_strategy() { return strategy_; }
  // The layer's role in its block ("qkv", "fc1", ...): the tag of the nodes it records, which
  // memory reports group saved bytes by. Empty: untagged.
  void set_role(std::string role) { role_ = std::move(role); }
  const std::string& role() const { return role_; }

  Tensor weight, bias;  // [out, in], [out] (undefined without bias)

 private:
  std::shared_ptr<BackwardStrategy> strategy_;
  std::string role_;
};

class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, Device device, double eps = 1e-6);
  Tensor forward(const Tensor& x) const;
  // Under autocast, write the output in the autocast dtype (ops/layer_norm.h: the normalization
  // stays f32, rounded once) — for a norm whose only consumers are matmuls, which would cast it
  // anyway; saves a pass each way. Off by default, as in PyTorch (its autocast keeps norms f32).
  void set_autocast_output(bool on) { autocast_output_ = on; }
  // The dtype forward writes for x (x's, or the autocast dtype with set_autocast_output).
  DType output_dtype(const Tensor& x) const;
  double eps() const { return eps_; }
  Tensor weight, bias;

 private:
  double eps_;
  bool autocast_output_ = false;
};

class Mlp : public Module {
 public:
  Mlp(int64_t dim, int64_t hidden, double dropout, Device device, Generator& generator);
  // With `norm`, x is normalized by it first, and fc1 recomputes the norm's output in backward
  // (Linear::forward_normed; with recompute_gelu, the fused fc1+GELU keeps the norm's output).
  Tensor forward(const Tensor& x, const LayerNorm* norm = nullptr) const;
  // Recompute fc1's output in backward (ops/linear_gelu.h) instead of keeping it: 3D fewer saved
  // values per token for one extra GEMM. fc1's input is then kept for the recomputation, so fc1's
  // weight gradient is exact and a sampled strategy on fc1 would save nothing: forward refuses
  // that combination (ValueError) instead of silently running fc1 exact.
  void set_recompute_gelu(bool recompute) { recompute_gelu_ = recompute; }
  std::shared_ptr<Linear> fc1, fc2;

 private:
  double dropout_;
  bool recompute_gelu_ = false;
};

class Attention : public Module {
 public:
  Attention(int64_t dim, int64_t heads, double attn_dropout, double proj_dropout, Device device, Generator& generator);
  // x [B, T, D]; with `norm`, x is normalized by it first, and qkv recomputes the norm's output in
  // backward (Linear::forward_normed).
  Tensor forward(const Tensor& x, const LayerNorm* norm = nullptr) const;
  // Fused (the default): softmax(Q·Kᵀ·scale)·V in one op (ops/attention.h) that keeps Q, K, V,
  // the output and the row log-sum-exp, never the [T, T] probabilities. Explicit: two matmul
  // nodes and a softmax, which the attention strategies below need; forward refuses a sampled
  // attention strategy (or attention dropout) with the fused attention (ValueError).
  void set_fused(bool fused) { fused_ = fused; }
  bool fused() const { return fused_; }
  std::shared_ptr<Linear> qkv, proj;
  // Strategies of the attention matmuls, one per operand gradient (each with its own proxy and
  // random stream): the scores S = Q·Kᵀ form dQ keeping (centred) K and dK keeping Q; the
  // context P·V forms dP keeping V (dV keeps P exact: softmax holds P anyway).
  std::shared_ptr<BackwardStrategy> scores_dq_strategy, scores_dk_strategy, context_strategy;

 private:
  Tensor explicit_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale) const;

  int64_t heads_, head_dim_;
  double attn_dropout_, proj_dropout_;
  bool fused_ = true;
};

// The matmul nodes of a block whose weight or operand gradient a backward strategy forms: the
// four linears and the two attention matmuls (scores Q·Kᵀ, context P·V). One table of names,
// which the command lines, reports and docs read; the name is also the tag of the layer's
// nodes in memory reports.
enum class MatmulTarget { qkv, proj, fc1, fc2, attn_scores, attn_context };

struct MatmulTargetInfo {
  MatmulTarget target;
  const char* name;  // "qkv", ..., "attn-scores", "attn-context"
};
// Every target, in the order of the enum.
const std::vector<MatmulTargetInfo>& matmul_targets();
const char* target_name(MatmulTarget target);

// One backward-strategy slot of a block: its target, a name unique within the block (the
// target's, or "attn-scores.dq" / "attn-scores.dk" for the two operand gradients of Q·Kᵀ) and
// the layer's own pointer, to read or replace.
struct MatmulSlot {
  MatmulTarget target;
  std::string name;
  std::shared_ptr<BackwardStrategy>* strategy;
};

class Block : public Module {
 public:
  Block(int64_t dim, int64_t heads, double mlp_ratio, double dropout, Device device, Generator& generator);
  Tensor forward(const Tensor& x) const;
  // Stochastic depth: in training, each residual branch (attention, MLP) of each sample is dropped
  // with probability `rate` (ops/dropout.h drop_path, on dropout_generator()). 0: off.
  void set_drop_path_rate(double rate);
  double drop_path_rate() const { return drop_path_rate_; }
  // Activation checkpointing (autograd/checkpoint.h): keep only the block's input for backward
  // and rerun the block's forward there, with the dropout generator rewound (drop path and
  // dropout repeat exactly) and the forward's precision policy; the gradients are the plain
  // block's. The rerun's own nodes (strategies included) save and free as usual.
  void set_checkpoint(bool on) { checkpoint_ = on; }
  bool checkpointed() const { return checkpoint_; }
  // LayerNorm-output recomputation: qkv and fc1 keep nothing of their inputs (norm1's and
  // norm2's outputs) and recompute them from the residual stream the norms keep anyway, one norm
  // pass each in backward (ops/matmul/norm_linear.h); the same values and gradients, bit for bit.
  void set_recompute_norms(bool on) { recompute_norms_ = on; }
  // Every strategy slot of this block, in target order: callers loop over them instead of
  // naming layers. A target has one slot per operand gradient it samples: attn-scores has two.
  std::vector<MatmulSlot> matmul_slots();
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Attention> attn;
  std::shared_ptr<Mlp> mlp;

 private:
  Tensor forward_body(const Tensor& x) const;
  double drop_path_rate_ = 0;
  bool checkpoint_ = false;
  bool recompute_norms_ = false;
};

// Tags the node that produced `t` (memory reports group saved bytes by tag); returns `t`. A
// tensor without a node (no grad recorded) is returned unchanged.
Tensor tag_node(const Tensor& t, const std::string& tag);

// The generator layers use for dropout masks (seeded by the application for reproducibility).
Generator& dropout_generator();

}  // namespace tg::nn
