// The replay of one ViT training step as allocations and frees (see memory_model.h and
// docs/memory-planning.md). Each function below mirrors one piece of code and says which: the
// order of allocations and frees, which node keeps which tensor (a kept tensor is a reference:
// a storage kept by several nodes is counted once) and when the engine lets go of it.
#include "apps/vit/memory_model.h"

#include <cstdio>
#include <initializer_list>
#include <map>
#include <utility>

#include "apps/vit/memory_replay.h"
#include "ops/matmul/sampled.h"

namespace tg::vit::detail {

std::vector<int64_t> StepReplay::parameter_sizes() const {
  std::vector<int64_t> sizes = {D_ * P_, D_, D_, T_ * D_};  // patch weight, bias, cls_token, pos_embed
  for (int64_t b = 0; b < c_.depth; ++b)
    for (int64_t n : {D_, D_, 3 * D_ * D_, 3 * D_, D_ * D_, D_, D_, D_, Hd_ * D_, Hd_, D_ * Hd_, D_}) sizes.push_back(n);
  for (int64_t n : {D_, D_, C_ * D_, C_}) sizes.push_back(n);  // final norm, head
  return sizes;
}

// ExactStrategy::save keeps the operand (or its bf16 copy); SamplingStrategy::save keeps k rows
// with i32 indices and f32 weights, after the f32 row scores it drops on return.
SavedOperand StepReplay::save_operand(Id x, int64_t rows, int64_t width, K kept_kind, double ratio) {
  SavedOperand saved;
  const int64_t k = ratio > 0 ? sample_budget(rows, ratio, StrategyConfig{}.k_min) : rows;
  if (k < rows) {
    const Id scores = alloc(rows * 4, K::transient_forward);
    saved.k = k;
    saved.indices = alloc(k * 4, K::sampled_rows);
    saved.weights = alloc(k * 4, K::sampled_rows);
    saved.rows = alloc(k * width * a_, K::sampled_rows);
    if (copy_on_save_) {
      const Id gathered = saved.rows;
      saved.rows = alloc(k * width * 2, K::sampled_rows);
      r_.unref(gathered);
    }
    saved.copy = copy_on_save_;
    r_.unref(scores);
    return saved;
  }
  if (copy_on_save_) {
    saved.rows = alloc(rows * width * 2, kept_kind);
    saved.copy = true;
  } else {
    saved.rows = r_.share(x);
  }
  return saved;
}

void StepReplay::release(const SavedOperand& saved) {
  r_.unref(saved.rows);
  r_.unref(saved.indices);
  r_.unref(saved.weights);
}

// Linear::forward: linear(autocast(x), weight, bias): under autocast the op makes bf16 copies of
// the f32 parameters (or takes the step's cached ones), then the GEMM's output; LinearBackward
// keeps the weight's copy (when x needs a gradient) and what the strategy keeps of x; the bias
// copy dies with the op.
std::pair<Id, Id> StepReplay::parameter_copies(int64_t slot, int64_t out, int64_t in, bool record) {
  if (!s_.autocast_bf16) return {kNone, kNone};
  const auto cached = cache_.find({slot < 0 ? slot : block_, slot});
  if (cached != cache_.end()) return {r_.share(cached->second.first), r_.share(cached->second.second)};
  // linear_parameters (ops/matmul/linear.cpp): the weight's copy, then the bias's.
  const Id w = alloc(out * in * 2, record ? K::weight_copies : K::transient_forward);
  return {alloc(out * 2, K::transient_forward), w};
}

Id StepReplay::linear(int64_t slot, Id x, int64_t rows, int64_t in, int64_t out, K out_kind, double ratio,
                      bool record, SavedOperand& saved, Id& weight_copy, K x_kind) {
  const auto [bias_copy, w] = parameter_copies(slot, out, in, record);
  const Id y = alloc(rows * out * a_, out_kind);
  if (record) {
    weight_copy = w;
    saved = save_operand(x, rows, in, x_kind, ratio);
  } else {
    r_.unref(w);
  }
  r_.unref(bias_copy);
  return y;
}

// norm_linear (ops/matmul/norm_linear.cpp): the norm, then the parameters' copies, then the
// output; the norm's output lives only inside the call; the node keeps x, the statistics and the
// weight's copy.
Id StepReplay::norm_linear(int64_t slot, Id x, int64_t out, K out_kind, bool record, Id& kept_x, Id& kept_mean,
                           Id& kept_rstd, Id& weight_copy) {
  const Id y = alloc(N_ * D_ * a_, K::transient_forward);
  const Id mean = alloc(N_ * 4, K::norm_stats), rstd = alloc(N_ * 4, K::norm_stats);
  const auto [bias_copy, w] = parameter_copies(slot, out, D_, record);
  const Id result = alloc(N_ * out * a_, out_kind);
  if (record) {
    kept_x = r_.share(x);
    kept_mean = mean;
    kept_rstd = rstd;
    weight_copy = w;
  } else {
    r_.unref(mean);
    r_.unref(rstd);
    r_.unref(w);
  }
  r_.unref(y);
  r_.unref(bias_copy);
  return result;
}

// SavedOperand::contract: Gᵀ·X from what was kept, a bf16 copy converted back to the gradient's
// dtype first; a sampled one scales its rows of G ([k, out]) before one GEMM over k.
Id StepReplay::weight_gradient(const SavedOperand& saved, int64_t rows, int64_t in, int64_t out) {
  const bool convert = saved.copy && a_ != 2;
  if (saved.k > 0) {
    const Id scaled = grad(saved.k * out * a_);
    const Id converted = convert ? r_.alloc(saved.k * in * a_, K::transient_gradients) : kNone;
    const Id gw = grad(out * in * g_);
    r_.unref(converted);
    r_.unref(scaled);
    return gw;
  }
  const Id converted = convert ? r_.alloc(rows * in * a_, K::transient_gradients) : kNone;
  const Id gw = grad(out * in * g_);
  r_.unref(converted);
  return gw;
}

// A parameter's f32 gradient as AccumulateGrad stores it (`nbytes`, the parameter's size): kept
// as .grad until zero_grad; with the optimizer in backward, its hook then updates the parameter
// (the first step creating the state there) and frees the gradient.
void StepReplay::store_gradient(Id g, int64_t nbytes) {
  r_.retag(g, K::gradients);
  if (!s_.optimizer_in_backward) {
    grads_.push_back(g);
    return;
  }
  if (!s_.steady_state)
    for (int64_t m = 0; m < optimizer_moments(); ++m) r_.alloc(nbytes, K::optimizer_state);
  r_.unref(g);
}

// The weight's and bias's gradients reach AccumulateGrad: directly (it steals the buffer), or
// when the linear ops return them in bf16 under autocast, through the casts' backward, which
// makes f32 copies (weight first: its cast was recorded after the bias's).
void StepReplay::parameter_gradients(Id weight_grad, int64_t weight_elems, Id bias_grad, int64_t bias_elems) {
  for (auto [g, elems] : {std::pair{weight_grad, weight_elems}, std::pair{bias_grad, bias_elems}}) {
    if (g == kNone) continue;
    if (g_ == 2) {
      const Id f32 = r_.alloc(elems * 4, K::gradients);
      r_.unref(g);
      store_gradient(f32, elems * 4);
    } else {
      store_gradient(g, elems * 4);
    }
  }
}

// LayerNorm's f32 weight and bias gradients [D]: AccumulateGrad steals the buffers.
void StepReplay::norm_gradients(Id weight_grad, Id bias_grad) {
  store_gradient(weight_grad, D_ * 4);
  store_gradient(bias_grad, D_ * 4);
}

// NormLinearBackward's recomputed norm output (layer_norm_unrecorded(...).y: the statistics it
// also makes die with the statement).
Id StepReplay::recompute_norm_output() {
  const Id y = r_.alloc(N_ * D_ * a_, K::transient_recompute);
  const Id mean = r_.alloc(N_ * 4, K::transient_recompute), rstd = r_.alloc(N_ * 4, K::transient_recompute);
  r_.unref(mean);
  r_.unref(rstd);
  return y;
}

// The engine's add_to_buffer: in place when the buffer is the storage's only handle, else a
// clone first (a checkpoint's rerun shares its incoming gradient with the outer engine).
void StepReplay::accumulate(Id& buffer, Id incoming, bool& shared) {
  if (shared) {
    const Id clone = grad(N_ * D_ * 4);
    r_.unref(buffer);
    buffer = clone;
    shared = false;
  }
  r_.unref(incoming);
}

// nn::Block::forward_body (nn/layers.cpp) with the plan's flags; `record` false is the
// checkpointed block's first run, which keeps nothing. x stays referenced by the caller.
Id StepReplay::block_forward(int64_t b, Id x, bool record, BlockKeep& k) {
  const BlockPlan& p = plan_.blocks[static_cast<size_t>(b)];
  block_ = b;
  r_.at(rerun_ ? "backward (checkpoint rerun)" : "forward", b, "attention");
  // h = residual(x, attn->forward(norm1(x)))
  Id y1 = kNone, qkv;
  const bool qkv_normed = p.recompute_norms && !p.sampled(0);
  if (!qkv_normed) {
    const bool kept = record && !p.sampled(0) && !copy_on_save_;
    y1 = alloc(N_ * D_ * a_, kept ? K::norm_output : K::transient_forward);  // LayerNorm (ops/layer_norm.cpp)
    const Id mean = alloc(N_ * 4, K::norm_stats), rstd = alloc(N_ * 4, K::norm_stats);
    if (record) {
      k.ln1_x = r_.share(x);
      k.ln1_mean = mean;
      k.ln1_rstd = rstd;
    } else {
      r_.unref(mean);
      r_.unref(rstd);
    }
    qkv = linear(0, y1, N_, D_, 3 * D_, record ? K::qkv : K::transient_forward, p.ratio[0], record, k.qkv_x,
                 k.qkv_weight, K::norm_output);
  } else {
    qkv = norm_linear(0, x, 3 * D_, record ? K::qkv : K::transient_forward, record, k.ln1_x, k.ln1_mean, k.ln1_rstd,
                      k.qkv_weight);
  }
  // The fused attention (ops/attention.cpp) keeps q, k, v (views of qkv's output), O and the
  // row log-sum-exp; proj's input is O itself.
  const Id out = alloc(N_ * D_ * a_, record ? K::attention_output : K::transient_forward);
  const Id lse = alloc(B_ * c_.heads * T_ * 4, K::attention_output);
  if (record) {
    k.qkv = r_.share(qkv);
    k.attn_out = r_.share(out);
    k.lse = lse;
  } else {
    r_.unref(lse);
  }
  r_.at(rerun_ ? "backward (checkpoint rerun)" : "forward", b, "proj");
  const Id proj = linear(1, out, N_, D_, D_, K::transient_forward, p.ratio[1], record, k.proj_x, k.proj_weight,
                         K::attention_output);
  r_.unref(qkv);  // Attention::forward's locals
  r_.unref(out);
  const Id h = alloc(N_ * D_ * 4, record ? K::block_input : K::transient_forward);  // add_converted
  r_.unref(proj);
  r_.unref(y1);

  // x_out = residual(h, mlp->forward(norm2(h)))
  r_.at(rerun_ ? "backward (checkpoint rerun)" : "forward", b, "mlp");
  Id y2 = kNone, g;
  const bool fc1_normed = p.recompute_norms && !p.recompute_gelu && !p.sampled(2);
  const bool g_kept = record && !p.sampled(3) && !copy_on_save_;
  if (!fc1_normed) {
    const bool kept = record && (p.recompute_gelu || (!p.sampled(2) && !copy_on_save_));
    y2 = alloc(N_ * D_ * a_, kept ? K::norm_output : K::transient_forward);
    const Id mean = alloc(N_ * 4, K::norm_stats), rstd = alloc(N_ * 4, K::norm_stats);
    if (record) {
      k.ln2_x = r_.share(h);
      k.ln2_mean = mean;
      k.ln2_rstd = rstd;
    } else {
      r_.unref(mean);
      r_.unref(rstd);
    }
  }
  if (p.recompute_gelu) {
    // linear_gelu (ops/matmul/linear_gelu.cpp) keeps its input as it is, the weight's and the
    // bias's copies, and writes GELU over the pre-activation: no [N, 4D] is kept.
    const auto [bias_copy, w] = parameter_copies(2, Hd_, D_, record);
    if (record && bias_copy != kNone) r_.retag(bias_copy, K::weight_copies);  // kept too
    g = alloc(N_ * Hd_ * a_, g_kept ? K::gelu_output : K::transient_forward);
    if (record) {
      k.fc1_x.rows = r_.share(y2);
      k.fc1_weight = w;
      k.fc1_bias = bias_copy;
    } else {
      r_.unref(w);
      r_.unref(bias_copy);
    }
  } else {
    Id f1;
    if (fc1_normed) {
      f1 = norm_linear(2, h, Hd_, record ? K::mlp_hidden : K::transient_forward, record, k.ln2_x, k.ln2_mean,
                       k.ln2_rstd, k.fc1_weight);
    } else {
      f1 = linear(2, y2, N_, D_, Hd_, record ? K::mlp_hidden : K::transient_forward, p.ratio[2], record, k.fc1_x,
                  k.fc1_weight, K::norm_output);
    }
    g = alloc(N_ * Hd_ * a_, g_kept ? K::gelu_output : K::transient_forward);  // gelu keeps its input
    if (record) k.fc1_out = r_.share(f1);
    r_.unref(f1);
  }
  const Id m = linear(3, g, N_, Hd_, D_, K::transient_forward, p.ratio[3], record, k.fc2_x, k.fc2_weight, K::gelu_output);
  r_.unref(g);
  const Id x_out = alloc(N_ * D_ * 4, K::block_input);
  r_.assign(x_out, b + 1 < c_.depth ? b + 1 : -1);
  r_.unref(m);
  r_.unref(y2);
  r_.unref(h);
  return x_out;
}

// The backward nodes of one recorded block in the engine's order (decreasing sequence numbers),
// from the gradient of its output (one reference, the buffer's; `shared`: the storage has
// another handle). Returns the gradient of its input, in a buffer of its own.
Id StepReplay::block_backward(int64_t b, Id grad_out, bool shared, BlockKeep& k) {
  const BlockPlan& p = plan_.blocks[static_cast<size_t>(b)];
  const bool cast = s_.autocast_bf16;
  const bool qkv_normed = p.recompute_norms && !p.sampled(0);
  const bool fc1_normed = p.recompute_norms && !p.recompute_gelu && !p.sampled(2);
  // Residual add: the stream's gradient goes on (to h's buffer) and to the branch, converted.
  Id hbuf = grad_out;
  const Id g_branch2 = cast ? grad(N_ * D_ * a_) : r_.share(grad_out);
  r_.at("backward", b, "fc2");
  const Id g_fc2 = grad(N_ * Hd_ * a_);
  const Id w2 = weight_gradient(k.fc2_x, N_, Hd_, D_), b2 = grad(D_ * g_);
  r_.unref(k.fc2_weight);
  release(k.fc2_x);
  r_.unref(g_branch2);
  parameter_gradients(w2, D_ * Hd_, b2, D_);
  Id g_fc1_out = kNone;  // fc1's output gradient into the LN2 node (when it is a node of its own)
  if (p.recompute_gelu) {
    r_.at("backward", b, "fc1+gelu (recomputed)");
    const Id dh = r_.alloc(N_ * Hd_ * a_, K::transient_recompute);
    g_fc1_out = grad(N_ * D_ * a_);
    const Id w1 = grad(Hd_ * D_ * g_), b1 = grad(Hd_ * g_);
    r_.unref(dh);
    release(k.fc1_x);
    r_.unref(k.fc1_weight);
    r_.unref(k.fc1_bias);
    r_.unref(g_fc2);
    parameter_gradients(w1, Hd_ * D_, b1, Hd_);
  } else {
    r_.at("backward", b, "gelu");
    const Id g_gelu = grad(N_ * Hd_ * a_);
    r_.unref(k.fc1_out);
    r_.unref(g_fc2);
    if (fc1_normed) {
      r_.at("backward", b, "fc1 (norm2 recomputed)");
      const Id y = recompute_norm_output();  // its statistics die with the statement
      const Id w1 = grad(Hd_ * D_ * g_), b1 = grad(Hd_ * g_);  // gemm_with_row_sums
      r_.unref(y);
      const Id gy = grad(N_ * D_ * a_), gx = grad(N_ * D_ * 4);
      const Id gn_w = grad(D_ * 4), gn_b = grad(D_ * 4);
      r_.unref(gy);
      r_.unref(k.ln2_x);
      r_.unref(k.ln2_mean);
      r_.unref(k.ln2_rstd);
      r_.unref(k.fc1_weight);
      accumulate(hbuf, gx, shared);
      r_.unref(g_gelu);
      parameter_gradients(w1, Hd_ * D_, b1, Hd_);
      norm_gradients(gn_w, gn_b);
    } else {
      r_.at("backward", b, "fc1");
      g_fc1_out = grad(N_ * D_ * a_);
      const Id w1 = weight_gradient(k.fc1_x, N_, D_, Hd_), b1 = grad(Hd_ * g_);
      r_.unref(k.fc1_weight);
      release(k.fc1_x);
      r_.unref(g_gelu);
      parameter_gradients(w1, Hd_ * D_, b1, Hd_);
    }
  }
  if (!fc1_normed) {
    r_.at("backward", b, "norm2");
    const Id gx = grad(N_ * D_ * 4), gn_w = grad(D_ * 4), gn_b = grad(D_ * 4);
    r_.unref(k.ln2_x);
    r_.unref(k.ln2_mean);
    r_.unref(k.ln2_rstd);
    norm_gradients(gn_w, gn_b);
    accumulate(hbuf, gx, shared);
    r_.unref(g_fc1_out);
  }
  // Residual add of the attention half: h's gradient goes on to x's buffer and to proj.
  Id xbuf = hbuf;
  const Id g_branch1 = cast ? grad(N_ * D_ * a_) : r_.share(hbuf);
  r_.at("backward", b, "proj");
  const Id g_proj = grad(N_ * D_ * a_);
  const Id wp = weight_gradient(k.proj_x, N_, D_, D_), bp = grad(D_ * g_);
  r_.unref(k.proj_weight);
  release(k.proj_x);
  r_.unref(g_branch1);
  parameter_gradients(wp, D_ * D_, bp, D_);
  r_.at("backward", b, "attention");
  const Id g_qkv = grad(N_ * 3 * D_ * a_);  // one [B, T, 3, H, hd] buffer: unbind's backward copies nothing
  r_.unref(k.qkv);
  r_.unref(k.attn_out);
  r_.unref(k.lse);
  r_.unref(g_proj);
  if (qkv_normed) {
    r_.at("backward", b, "qkv (norm1 recomputed)");
    const Id y = recompute_norm_output();
    const Id wq = grad(3 * D_ * D_ * g_), bq = grad(3 * D_ * g_);  // gemm_with_row_sums
    r_.unref(y);
    const Id gy = grad(N_ * D_ * a_), gx = grad(N_ * D_ * 4);
    const Id gn_w = grad(D_ * 4), gn_b = grad(D_ * 4);
    r_.unref(gy);
    r_.unref(k.ln1_x);
    r_.unref(k.ln1_mean);
    r_.unref(k.ln1_rstd);
    r_.unref(k.qkv_weight);
    accumulate(xbuf, gx, shared);
    r_.unref(g_qkv);
    parameter_gradients(wq, 3 * D_ * D_, bq, 3 * D_);
    norm_gradients(gn_w, gn_b);
  } else {
    r_.at("backward", b, "qkv");
    const Id gq = grad(N_ * D_ * a_);
    const Id wq = weight_gradient(k.qkv_x, N_, D_, 3 * D_), bq = grad(3 * D_ * g_);
    r_.unref(k.qkv_weight);
    release(k.qkv_x);
    r_.unref(g_qkv);
    parameter_gradients(wq, 3 * D_ * D_, bq, 3 * D_);
    r_.at("backward", b, "norm1");
    const Id gx = grad(N_ * D_ * 4), gn_w = grad(D_ * 4), gn_b = grad(D_ * 4);
    r_.unref(k.ln1_x);
    r_.unref(k.ln1_mean);
    r_.unref(k.ln1_rstd);
    norm_gradients(gn_w, gn_b);
    accumulate(xbuf, gx, shared);
    r_.unref(gq);
  }
  return xbuf;
}

}  // namespace tg::vit::detail
