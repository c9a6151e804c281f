// VisionTransformer construction (timm's initialization per tensor), forward, timm-compatible weights.
#include "apps/vit/vit.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "nn/safetensors.h"
#include "ops/elementwise.h"
#include "ops/matmul/linear.h"
#include "ops/precision.h"
#include "ops/shape_ops.h"

namespace tg::vit {

VitConfig preset(const std::string& name) {
  VitConfig c;
  if (name == "vit-tiny") {
    c.dim = 192; c.depth = 12; c.heads = 3;
  } else if (name == "vit-small") {
    c.dim = 384; c.depth = 12; c.heads = 6;
  } else if (name == "vit-base") {
    c.dim = 768; c.depth = 12; c.heads = 12;
  } else {
    TG_THROW(ValueError, "unknown model '", name, "': expected vit-tiny, vit-small or vit-base");
  }
  return c;
}

namespace {
// A sub-module that only names parameters ("patch_embed.proj.weight"); the forward is ViT's.
struct NamedParams : nn::Module {
  Tensor add(const std::string& name, Tensor t) { return register_parameter(name, std::move(t)); }
  template <class M>
  void child(const std::string& name, std::shared_ptr<M> m) { register_module(name, std::move(m)); }
};
}  // namespace

VisionTransformer::VisionTransformer(const VitConfig& config, Device device, uint64_t seed) : config_(config) {
  const VitConfig& c = config_;
  TG_CHECK(c.patch_size > 0 && c.image_size % c.patch_size == 0, ValueError, "ViT: patch size ", c.patch_size,
           " does not divide the image size ", c.image_size);
  TG_CHECK(c.heads > 0 && c.dim % c.heads == 0, ValueError, "ViT: dim ", c.dim, " is not divisible by ", c.heads, " heads");
  // timm's VisionTransformer.init_weights (mode ''): every Linear trunc_normal(0.02) with zero
  // bias (nn/layers.cpp), pos_embed trunc_normal(0.02), cls_token normal(1e-6), LayerNorms
  // ones/zeros; the patch embedding is a Conv2d that timm leaves at PyTorch's default,
  // kaiming_uniform(a = sqrt(5)): weight and bias U(±1/sqrt(fan_in)), fan_in = C·p·p.
  Generator generator(stream_seed(seed, kInitStream));
  auto patch_embed = std::make_shared<NamedParams>();
  auto proj = std::make_shared<NamedParams>();
  const double patch_bound = 1.0 / std::sqrt(static_cast<double>(c.in_channels * c.patch_size * c.patch_size));
  patch_weight = proj->add("weight", empty({c.dim, c.in_channels, c.patch_size, c.patch_size}, DType::f32, device));
  nn::uniform_(patch_weight, patch_bound, generator);
  patch_bias = proj->add("bias", empty({c.dim}, DType::f32, device));
  nn::uniform_(patch_bias, patch_bound, generator);
  patch_embed->child("proj", proj);
  cls_token = register_parameter("cls_token", empty({1, 1, c.dim}, DType::f32, device));
  nn::normal_(cls_token, 1e-6, generator);
  pos_embed = register_parameter("pos_embed", empty({1, c.tokens(), c.dim}, DType::f32, device));
  nn::trunc_normal_(pos_embed, 0.02, generator);
  register_module("patch_embed", patch_embed);
  auto block_list = std::make_shared<NamedParams>();
  for (int64_t i = 0; i < c.depth; ++i) {
    blocks.push_back(std::make_shared<nn::Block>(c.dim, c.heads, c.mlp_ratio, c.dropout, device, generator));
    blocks.back()->attn->set_fused(c.fused_attention);
    if (c.depth > 1)
      blocks.back()->set_drop_path_rate(c.drop_path_rate * static_cast<double>(i) / static_cast<double>(c.depth - 1));
    block_list->child(std::to_string(i), blocks.back());
  }
  register_module("blocks", block_list);
  norm = register_module("norm", std::make_shared<nn::LayerNorm>(c.dim, device));
  norm->set_autocast_output(true);  // feeds the head only (the class token)
  head = register_module("head", std::make_shared<nn::Linear>(c.dim, c.num_classes, true, device, generator));
  head->set_role("head");
}

Tensor VisionTransformer::forward(const Tensor& images) const {
  const VitConfig& c = config_;
  TG_CHECK(images.dim() == 4 && images.size(1) == c.in_channels && images.size(2) == c.image_size &&
               images.size(3) == c.image_size,
           ShapeError, "ViT: expected images [B, ", c.in_channels, ", ", c.image_size, ", ", c.image_size, "], got ",
           images.shape().str());
  const int64_t batch = images.size(0), grid = c.image_size / c.patch_size, p = c.patch_size;
  // [B, C, g, p, g, p] -> [B, g, g, C, p, p] -> [B, N, C*p*p]: each row is one patch flattened in
  // the conv weight's (C, p, p) order.
  const Tensor patches = reshape(permute(reshape(images, {batch, c.in_channels, grid, p, grid, p}), {0, 2, 4, 1, 3, 5}),
                                 {batch, grid * grid, c.in_channels * p * p});
  // Under autocast the patch GEMM runs in bf16 (linear rounds the f32 weight itself and returns
  // its gradient in f32); the residual stream (tokens) stays in f32.
  const Tensor embedded = nn::tag_node(
      linear(autocast(patches), reshape(patch_weight, {c.dim, c.in_channels * p * p}), patch_bias), "patch-embed");
  Tensor x = add(concat({expand(cls_token, {batch, 1, c.dim}), cast(embedded, cls_token.dtype())}, 1), pos_embed);
  for (const auto& block : blocks) x = block->forward(x);
  // LayerNorm is per token, so normalizing only the class token equals timm's norm-then-pick.
  // The logits are f32 in every precision: the loss computes in f32.
  return cast(head->forward(norm->forward(select(x, 1, 0))), DType::f32);
}

std::vector<Tensor> VisionTransformer::autocast_weights() const {
  std::vector<Tensor> weights{patch_weight, patch_bias, head->weight, head->bias};
  for (const auto& block : blocks) {
    if (block->checkpointed()) continue;
    for (const nn::Linear* linear : {block->attn->qkv.get(), block->attn->proj.get(), block->mlp->fc1.get(),
                                     block->mlp->fc2.get()}) {
      weights.push_back(linear->weight);
      if (linear->bias.defined()) weights.push_back(linear->bias);
    }
  }
  return weights;
}

void save_weights(const VisionTransformer& model, const std::string& path) {
  // "format": "pt" is what safetensors.torch writes; some Hugging Face loaders require it.
  nn::save_safetensors(path, model.state_dict(), {{"format", "pt"}});
}

void load_weights(VisionTransformer& model, const nn::StateDict& weights, HeadInit head) {
  if (head == HeadInit::load) {
    model.load_state_dict(weights, /*strict=*/true);
    return;
  }
  nn::StateDict kept = weights;
  for (const auto& [name, own] : model.head->state_dict()) {
    const std::string key = "head." + name;
    const auto it = weights.find(key);
    TG_CHECK(it != weights.end(), ValueError, "load_weights: missing key '", key,
             "' (resetting the head replaces the file's classifier, so the file must have one)");
    const bool weight = own.dim() == 2;  // [classes, dim]; the bias is [classes]
    TG_CHECK(it->second.dim() == own.dim() && (!weight || it->second.size(1) == own.size(1)), ShapeError,
             "load_weights: key '", key, "' has shape ", it->second.shape().str(),
             " in the state dict; resetting the head needs ",
             weight ? "[classes, " + std::to_string(own.size(1)) + "]" : std::string("[classes]"), " for the model's ",
             own.shape().str());
    kept[key] = own.clone();  // the constructor's init, loaded back unchanged
  }
  model.load_state_dict(kept, /*strict=*/true);
}

void load_weights(VisionTransformer& model, const std::string& path, HeadInit head) {
  load_weights(model, nn::load_safetensors(path).tensors, head);
}

}  // namespace tg::vit
