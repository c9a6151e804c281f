// Transformer layers built from tapegrad ops.
#include "nn/layers.h"

#include <cmath>
#include <vector>

#include "autograd/checkpoint.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "ops/attention.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/layer_norm.h"
#include "ops/matmul/linear.h"
#include "ops/matmul/linear_gelu.h"
#include "ops/matmul/matmul.h"
#include "ops/matmul/norm_linear.h"
#include "ops/precision.h"
#include "ops/shape_ops.h"
#include "ops/softmax.h"

namespace tg::nn {

void trunc_normal_(const Tensor& t, double std, Generator& generator, double low, double high) {
  TG_CHECK(std > 0 && low < high, ValueError, "trunc_normal_: expected std > 0 and low < high, got std ", std,
           " and [", low, ", ", high, "]");
  const double kept = 0.5 * (std::erf(high / (std * M_SQRT2)) - std::erf(low / (std * M_SQRT2)));
  TG_CHECK(kept > 1e-3, ValueError, "trunc_normal_: [", low, ", ", high, "] holds only ", kept,
           " of N(0, ", std, "); redrawing would not end");
  NoGradGuard no_grad;
  // Drawn on the host (the CPU's Philox stream is the GPU's), then every value outside the bounds
  // is redrawn, as a truncated normal is defined (clamping would pile mass onto the bounds).
  Tensor values = randn({t.numel()}, DType::f32, Device::cpu(), generator, 0, std);
  float* v = values.data<float>();
  std::vector<int64_t> outside;
  for (int64_t i = 0; i < t.numel(); ++i)
    if (v[i] < low || v[i] > high) outside.push_back(i);
  while (!outside.empty()) {
    const Tensor redraw = randn({static_cast<int64_t>(outside.size())}, DType::f32, Device::cpu(), generator, 0, std);
    std::vector<int64_t> still;
    for (size_t j = 0; j < outside.size(); ++j) {
      const float r = redraw.data<float>()[j];
      if (r < low || r > high) still.push_back(outside[j]);
      else v[outside[j]] = r;
    }
    outside.swap(still);
  }
  t.copy_(values.raw_reshape(t.shape()).to(t.device()));
}

void normal_(const Tensor& t, double std, Generator& generator) {
  NoGradGuard no_grad;
  t.copy_(randn(t.shape(), DType::f32, t.device(), generator, 0, std));
}

void uniform_(const Tensor& t, double bound, Generator& generator) {
  NoGradGuard no_grad;
  t.copy_(rand(t.shape(), DType::f32, t.device(), generator, -bound, bound));
}

Tensor tag_node(const Tensor& t, const std::string& tag) {
  if (const std::shared_ptr<Node> node = t.grad_fn()) node->set_tag(tag);
  return t;
}

Generator& dropout_generator() {
  static Generator generator(0x5eed);
  return generator;
}

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, Device device, Generator& generator)
    : strategy_(std::make_shared<ExactStrategy>()) {
  weight = register_parameter("weight", empty({out_features, in_features}, DType::f32, device));
  trunc_normal_(weight, 0.02, generator);
  if (with_bias) bias = register_parameter("bias", zeros({out_features}, DType::f32, device));
}

// Under autocast the input is cast and the f32 parameters go in as they are: linear rounds them
// for its GEMMs and returns their gradients in f32 (ops/matmul/linear.h).
Tensor Linear::forward(const Tensor& x) const {
  return tag_node(linear(autocast(x), weight, bias, strategy_.get()), role_);
}

Tensor Linear::forward_normed(const LayerNorm& norm, const Tensor& x) const {
  if (!dynamic_cast<const ExactStrategy*>(strategy_.get())) return forward(norm.forward(x));
  // What forward(norm.forward(x)) multiplies: the norm's output in the autocast dtype (written so
  // by the norm, or cast: the same bits, ops/layer_norm.h).
  return tag_node(norm_linear(x, norm.weight, norm.bias, norm.eps(), autocast_dtype_of(x), weight, bias), role_);
}

LayerNorm::LayerNorm(int64_t dim, Device device, double eps) : eps_(eps) {
  weight = register_parameter("weight", ones({dim}, DType::f32, device));
  bias = register_parameter("bias", zeros({dim}, DType::f32, device));
}

DType LayerNorm::output_dtype(const Tensor& x) const { return autocast_output_ ? autocast_dtype_of(x) : x.dtype(); }

Tensor LayerNorm::forward(const Tensor& x) const {
  return tag_node(layer_norm(x, weight, bias, eps_, output_dtype(x)), "layer-norm");
}

Mlp::Mlp(int64_t dim, int64_t hidden, double dropout, Device device, Generator& generator) : dropout_(dropout) {
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden, true, device, generator));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim, true, device, generator));
  fc1->set_role(target_name(MatmulTarget::fc1));
  fc2->set_role(target_name(MatmulTarget::fc2));
}

Tensor Mlp::forward(const Tensor& x_in, const LayerNorm* norm) const {
  // With recompute_gelu the fused fc1+GELU keeps its input: the norm runs on its own then.
  const Tensor x = norm && recompute_gelu_ ? norm->forward(x_in) : x_in;
  const bool fuse_norm = norm && !recompute_gelu_;
  TG_CHECK(!recompute_gelu_ || dynamic_cast<const ExactStrategy*>(fc1->backward_strategy().get()), ValueError,
           "Mlp: recompute_gelu keeps fc1's input for the recomputation, so fc1's weight gradient is exact; its "
           "backward strategy must be exact, got ", fc1->backward_strategy()->name());
  // Tagged for memory reports: "gelu" keeps its input (fc1's output), the fused "fc1-gelu" node
  // keeps fc1's input and recomputes the rest.
  const Tensor activated = recompute_gelu_ ? tag_node(linear_gelu(autocast(x), fc1->weight, fc1->bias), "fc1-gelu")
                                           : tag_node(gelu(fuse_norm ? fc1->forward_normed(*norm, x)
                                                                               : fc1->forward(x)),
                                                      "gelu");
  const Tensor h = dropout(activated, dropout_, is_training(), dropout_generator());
  return dropout(fc2->forward(h), dropout_, is_training(), dropout_generator());
}

Attention::Attention(int64_t dim, int64_t heads, double attn_dropout, double proj_dropout, Device device,
                     Generator& generator)
    : scores_dq_strategy(std::make_shared<ExactStrategy>()), scores_dk_strategy(std::make_shared<ExactStrategy>()),
      context_strategy(std::make_shared<ExactStrategy>()), heads_(heads), head_dim_(dim / heads),
      attn_dropout_(attn_dropout), proj_dropout_(proj_dropout) {
  TG_CHECK(heads > 0 && dim % heads == 0, ValueError, "Attention: dim ", dim, " is not divisible by ", heads, " heads");
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim, true, device, generator));
  proj = register_module("proj", std::make_shared<Linear>(dim, dim, true, device, generator));
  qkv->set_role(target_name(MatmulTarget::qkv));
  proj->set_role(target_name(MatmulTarget::proj));
}

Tensor Attention::forward(const Tensor& x, const LayerNorm* norm) const {
  const int64_t batch = x.size(0), tokens = x.size(1), dim = x.size(2);
  // [B, T, 3D] -> q, k, v [B, H, T, hd], views of one qkv linear's output (and one sample of its
  // input). One unbind node gathers their gradients into a single [B, T, 3, H, hd] buffer, the
  // qkv output's own layout, so backward writes each gradient once and reshapes for free.
  const Tensor projected = norm ? qkv->forward_normed(*norm, x) : qkv->forward(x);
  const std::vector<Tensor> parts = unbind(reshape(projected, {batch, tokens, 3, heads_, head_dim_}), 2);
  const Tensor q = permute(parts[0], {0, 2, 1, 3}), k = permute(parts[1], {0, 2, 1, 3}), v = permute(parts[2], {0, 2, 1, 3});
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  Tensor context;  // [B, H, T, hd]
  if (fused_) {
    for (const auto* strategy : {&scores_dq_strategy, &scores_dk_strategy, &context_strategy})
      TG_CHECK(dynamic_cast<const ExactStrategy*>(strategy->get()), ValueError,
               "Attention: a sampled attention matmul (", (*strategy)->name(),
               ") needs the explicit attention: the fused attention has no matmul nodes to sample");
    TG_CHECK(attn_dropout_ == 0 || !is_training(), ValueError,
             "Attention: attention dropout needs the explicit attention (the fused one keeps no probabilities), got ",
             attn_dropout_);
    context = tag_node(scaled_dot_product_attention(q, k, v, scale), "attention");
  } else {
    context = explicit_attention(q, k, v, scale);
  }
  const Tensor merged = reshape(transpose(context, 1, 2), {batch, tokens, dim});
  return dropout(proj->forward(merged), proj_dropout_, is_training(), dropout_generator());
}

Tensor Attention::explicit_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale) const {
  // softmax's input gradient has rows that sum to zero, so dQ's strategy may centre K.
  const Tensor scores = tag_node(matmul(mul(q, scale), k, false, true, scores_dq_strategy.get(),
                                        scores_dk_strategy.get(), /*grad_rows_sum_to_zero=*/true),
                                 target_name(MatmulTarget::attn_scores));  // [B, H, T, T]
  const Tensor attn = dropout(tag_node(softmax(scores), "softmax"), attn_dropout_, is_training(), dropout_generator());
  // dP samples V's columns; dV keeps P exact: softmax holds P for its own backward, so a
  // sampled copy of P's rows would add memory instead of saving it.
  return tag_node(matmul(attn, v, false, false, context_strategy.get(), nullptr),
                  target_name(MatmulTarget::attn_context));
}

Block::Block(int64_t dim, int64_t heads, double mlp_ratio, double dropout, Device device, Generator& generator) {
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(dim, device));
  norm1->set_autocast_output(true);  // feeds qkv only
  attn = register_module("attn", std::make_shared<Attention>(dim, heads, 0.0, dropout, device, generator));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(dim, device));
  norm2->set_autocast_output(true);  // feeds fc1 only
  mlp = register_module("mlp", std::make_shared<Mlp>(dim, static_cast<int64_t>(static_cast<double>(dim) * mlp_ratio),
                                                     dropout, device, generator));
}

void Block::set_drop_path_rate(double rate) {
  TG_CHECK(rate >= 0 && rate < 1, ValueError, "Block: expected a drop-path rate in [0, 1), got ", rate);
  drop_path_rate_ = rate;
}

Tensor Block::forward(const Tensor& x) const {
  if (!checkpoint_) return forward_body(x);
  const PrecisionPolicy policy = precision_policy();
  return tag_node(checkpoint(
                      [this, policy](const std::vector<Tensor>& in) {
                        const PrecisionGuard precision(policy);
                        return forward_body(in[0]);
                      },
                      {x}, {&dropout_generator()}),
                  "checkpoint");
}

Tensor Block::forward_body(const Tensor& x) const {
  // The residual stream keeps x's dtype (f32 under autocast, as PyTorch's type promotion does);
  // the branches may compute in the autocast dtype and join it converted (add_converted: the
  // cast and the add in one pass; with drop path, the cast comes before its per-sample scale).
  auto residual = [&](const Tensor& stream, const Tensor& branch) {
    if (drop_path_rate_ == 0 || !is_training()) return add_converted(stream, branch);
    return add(stream, drop_path(cast(branch, stream.dtype()), drop_path_rate_, true, dropout_generator()));
  };
  if (recompute_norms_) {
    const Tensor h = residual(x, attn->forward(x, norm1.get()));
    return residual(h, mlp->forward(h, norm2.get()));
  }
  const Tensor h = residual(x, attn->forward(norm1->forward(x)));
  return residual(h, mlp->forward(norm2->forward(h)));
}

const std::vector<MatmulTargetInfo>& matmul_targets() {
  static const std::vector<MatmulTargetInfo> table = {
      {MatmulTarget::qkv, "qkv"},   {MatmulTarget::proj, "proj"},
      {MatmulTarget::fc1, "fc1"},   {MatmulTarget::fc2, "fc2"},
      {MatmulTarget::attn_scores, "attn-scores"}, {MatmulTarget::attn_context, "attn-context"},
  };
  return table;
}

const char* target_name(MatmulTarget target) { return matmul_targets()[static_cast<size_t>(target)].name; }

std::vector<MatmulSlot> Block::matmul_slots() {
  const std::string scores = target_name(MatmulTarget::attn_scores);
  return {
      {MatmulTarget::qkv, target_name(MatmulTarget::qkv), &attn->qkv->backward_strategy()},
      {MatmulTarget::proj, target_name(MatmulTarget::proj), &attn->proj->backward_strategy()},
      {MatmulTarget::fc1, target_name(MatmulTarget::fc1), &mlp->fc1->backward_strategy()},
      {MatmulTarget::fc2, target_name(MatmulTarget::fc2), &mlp->fc2->backward_strategy()},
      {MatmulTarget::attn_scores, scores + ".dq", &attn->scores_dq_strategy},
      {MatmulTarget::attn_scores, scores + ".dk", &attn->scores_dk_strategy},
      {MatmulTarget::attn_context, target_name(MatmulTarget::attn_context), &attn->context_strategy},
  };
}

}  // namespace tg::nn
