// vit_crosscheck: one fp32 training step's numbers (logits, cross-entropy loss, every parameter
// gradient) of a ViT on a given batch, for comparison with timm (tests/pytorch/crosscheck_timm.py,
// docs/interop.md). The weights come from a timm state dict (--weights, loaded strictly) or from
// tapegrad's own initialization (--seed), which --save-init writes for the reverse check.
//
//   vit_crosscheck --model vit-tiny --patch 4 --img 32 --classes 10 --weights timm.safetensors
//                  --batch batch.safetensors --device cuda --out ours.safetensors
//   vit_crosscheck --model vit-tiny --patch 4 --img 32 --classes 10 --seed 7
//                  --save-init init.safetensors [--batch batch.safetensors --out ours.safetensors]
#include <CLI/CLI.hpp>
#include <iostream>
#include <map>
#include <string>

#include "apps/vit/vit.h"
#include "autograd/engine.h"
#include "nn/safetensors.h"
#include "ops/loss.h"
#include "ops/precision.h"

namespace {

using namespace tg;

struct Options {
  std::string model, weights, save_init, batch, out, device = "cpu";
  int64_t dim = 0, depth = 0, heads = 0, patch = 0, img = 0, classes = 0, channels = 0;
  uint64_t seed = 0;
};

// The preset (or VitConfig's defaults without --model), then every size given explicitly.
vit::VitConfig make_config(const Options& o, const CLI::App& app) {
  vit::VitConfig c = o.model.empty() ? vit::VitConfig{} : vit::preset(o.model);
  const auto given = [&](const char* flag, int64_t& field, int64_t value) {
    if (app.count(flag) > 0) field = value;
  };
  given("--dim", c.dim, o.dim);
  given("--depth", c.depth, o.depth);
  given("--heads", c.heads, o.heads);
  given("--patch", c.patch_size, o.patch);
  given("--img", c.image_size, o.img);
  given("--classes", c.num_classes, o.classes);
  given("--channels", c.in_channels, o.channels);
  return c;
}

Tensor batch_tensor(const nn::SafetensorsFile& file, const std::string& path, const std::string& name, DType dtype) {
  const auto it = file.tensors.find(name);
  TG_CHECK(it != file.tensors.end(), IoError, "'", path, "' has no tensor '", name, "' (expected \"images\" f32 ",
           "[B, C, H, W] and \"labels\" i64 [B])");
  TG_CHECK(it->second.dtype() == dtype, TypeError, "'", path, "': tensor '", name, "' has dtype ",
           dtype_name(it->second.dtype()), ", expected ", dtype_name(dtype));
  return it->second;
}

// Forward, mean cross entropy and backward on the batch; writes logits, loss and grad.<name>.
void step_and_write(const vit::VisionTransformer& model, const Options& o, Device device) {
  const nn::SafetensorsFile batch = nn::load_safetensors(o.batch);
  const Tensor images = batch_tensor(batch, o.batch, "images", DType::f32).to(device);
  const Tensor labels = batch_tensor(batch, o.batch, "labels", DType::i64).to(device);
  TG_CHECK(labels.dim() == 1 && images.dim() == 4 && labels.size(0) == images.size(0), ShapeError, "'", o.batch,
           "': expected images [B, C, H, W] and labels [B], got ", images.shape().str(), " and ",
           labels.shape().str());
  const Tensor logits = model.forward(images);
  const Tensor loss = cross_entropy(logits, labels);
  backward(loss);
  std::map<std::string, Tensor> out{{"logits", logits.detach()}, {"loss", loss.detach()}};
  for (const auto& [name, p] : model.named_parameters()) {
    TG_CHECK(p.grad().defined(), InternalError, "vit_crosscheck: parameter '", name, "' received no gradient");
    out["grad." + name] = p.grad();
  }
  nn::save_safetensors(o.out, out);
  std::cout << "vit_crosscheck: loss " << loss.item() << ", " << model.named_parameters().size()
            << " parameter gradients on " << device.str() << " -> " << o.out << "\n";
}

int run(int argc, char** argv) {
  CLI::App app{"One fp32 ViT training step (logits, loss, gradients) for cross-checking against timm"};
  Options o;
  app.add_option("--model", o.model, "preset: vit-tiny, vit-small or vit-base (sizes below override it)");
  app.add_option("--dim", o.dim, "embedding width");
  app.add_option("--depth", o.depth, "number of blocks");
  app.add_option("--heads", o.heads, "attention heads");
  app.add_option("--patch", o.patch, "patch size");
  app.add_option("--img", o.img, "image size");
  app.add_option("--classes", o.classes, "number of classes");
  app.add_option("--channels", o.channels, "input channels");
  auto* weights = app.add_option("--weights", o.weights, "timm state dict (safetensors) to load strictly")
                      ->check(CLI::ExistingFile);
  auto* seed = app.add_option("--seed", o.seed, "seed of tapegrad's initialization when no --weights");
  auto* save_init = app.add_option("--save-init", o.save_init, "write the initialized weights (timm names) here");
  weights->excludes(seed)->excludes(save_init);
  auto* batch = app.add_option("--batch", o.batch, "safetensors with \"images\" f32 [B,C,H,W], \"labels\" i64 [B]")
                    ->check(CLI::ExistingFile);
  auto* out = app.add_option("--out", o.out, "where to write logits, loss and grad.<param> (safetensors)");
  batch->needs(out);
  out->needs(batch);
  app.add_option("--device", o.device, "cpu, cuda or cuda:N");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  TG_CHECK(!o.batch.empty() || !o.save_init.empty(), ValueError,
           "nothing to do: give --batch and --out (a training step), --save-init, or both");

  const Device device = Device::parse(o.device);
  check_device_usable(device);
  // The comparison is against full-fp32 PyTorch (TF32 off there too): the default policy.
  PrecisionGuard precision(PrecisionPolicy{});
  vit::VisionTransformer model(make_config(o, app), device, o.seed);
  if (!o.weights.empty()) vit::load_weights(model, o.weights);
  if (!o.save_init.empty()) vit::save_weights(model, o.save_init);
  if (!o.batch.empty()) step_and_write(model, o, device);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const tg::Error& e) {
    std::cerr << "vit_crosscheck: " << e.what() << "\n";
    return 1;
  }
}
