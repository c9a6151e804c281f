// The Vision Transformer of train_vit (timm's VisionTransformer: class token, learned position
// embedding, pre-norm blocks, final norm, linear head on the class token), with timm's parameter
// names and layouts so that checkpoints load in both directions. The patch embedding is a linear
// map of flattened non-overlapping patches whose weight keeps the conv layout [D, C, p, p].
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace tg::vit {

struct VitConfig {
  int64_t image_size = 32, patch_size = 4, in_channels = 3, num_classes = 10;
  int64_t dim = 192, depth = 12, heads = 3;
  double mlp_ratio = 4.0, dropout = 0.0;
  // Fused attention (nn::Attention::set_fused; keeps no [T, T] probabilities) or the explicit
  // one, which the sampled attention matmuls (attn-scores, attn-context) need.
  bool fused_attention = true;
  // Stochastic depth of the last block; block i gets drop_path_rate * i / (depth - 1), timm's
  // linspace(0, drop_path_rate, depth).
  double drop_path_rate = 0.0;

  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  int64_t tokens() const { return num_patches() + 1; }
};

// vit-tiny (192, 12 layers, 3 heads), vit-small (384, 12, 6), vit-base (768, 12, 12).
VitConfig preset(const std::string& name);

class VisionTransformer;

// Writes the parameters under timm's names and layouts (f32) to a safetensors file that
// safetensors.torch.load_file and timm's load_state_dict(strict=True) accept (docs/interop.md).
void save_weights(const VisionTransformer& model, const std::string& path);
// What loading does with the classifier (head.weight, head.bias). load: like every other tensor
// (strict). reset: the file's head may have any class count and is not loaded; the model keeps
// the head its constructor initialised (timm's: trunc_normal(0.02) weight, zero bias), as timm
// does when it loads pretrained weights for another class count.
enum class HeadInit { load, reset };

// Loads a timm state dict saved with safetensors into `model`, strictly: a missing, unexpected,
// mis-shaped or mis-typed key fails naming the key (and both shapes). With HeadInit::reset the
// head's keys must still be there (a file without them is not a classifier's checkpoint), with
// the model's width: ShapeError naming the key and both shapes otherwise.
void load_weights(VisionTransformer& model, const nn::StateDict& weights, HeadInit head = HeadInit::load);
void load_weights(VisionTransformer& model, const std::string& path, HeadInit head = HeadInit::load);

class VisionTransformer : public nn::Module {
 public:
  VisionTransformer(const VitConfig& config, Device device, uint64_t seed);
  // images [B, C, H, W] -> logits [B, num_classes]
  Tensor forward(const Tensor& images) const;
  const VitConfig& config() const { return config_; }
  // Parameters that AdamW does not decay besides biases and norms (timm's no_weight_decay).
  std::vector<std::string> no_weight_decay() const { return {"cls_token", "pos_embed"}; }
  // The weights and biases its linears round under mixed precision, for a step's
  // AutocastWeightCache (ops/precision.h): the patch embedding, the head and the four linears of
  // every block that is not checkpointed — a checkpointed block rounds its own again when it
  // reruns, so that it keeps no copy between its forward and its backward.
  std::vector<Tensor> autocast_weights() const;

  Tensor patch_weight, patch_bias, cls_token, pos_embed;  // patch_embed.proj.{weight,bias}
  std::vector<std::shared_ptr<nn::Block>> blocks;
  std::shared_ptr<nn::LayerNorm> norm;
  std::shared_ptr<nn::Linear> head;

 private:
  VitConfig config_;
};

}  // namespace tg::vit
