// The ViT model: timm's parameter names and shapes, presets, and a CPU forward/backward.
#include <doctest/doctest.h>

#include "tests/apps/vit_fixture.h"

using namespace tg;

TEST_CASE("ViT parameters carry timm's names and layouts") {
  vit::VitConfig c = test::small_vit_config();
  vit::VisionTransformer model(c, Device::cpu(), 1);
  std::map<std::string, Shape> shapes;
  for (const auto& [name, p] : model.named_parameters()) shapes[name] = p.shape();
  CHECK(shapes.at("patch_embed.proj.weight") == Shape{192, 3, 4, 4});
  CHECK(shapes.at("patch_embed.proj.bias") == Shape{192});
  CHECK(shapes.at("cls_token") == Shape{1, 1, 192});
  CHECK(shapes.at("pos_embed") == Shape{1, 17, 192});
  CHECK(shapes.at("blocks.1.norm1.weight") == Shape{192});
  CHECK(shapes.at("blocks.0.attn.qkv.weight") == Shape{576, 192});
  CHECK(shapes.at("blocks.0.attn.proj.bias") == Shape{192});
  CHECK(shapes.at("blocks.1.mlp.fc1.weight") == Shape{768, 192});
  CHECK(shapes.at("blocks.1.mlp.fc2.weight") == Shape{192, 768});
  CHECK(shapes.at("norm.bias") == Shape{192});
  CHECK(shapes.at("head.weight") == Shape{10, 192});
  CHECK(shapes.size() == 4 + 2 * 12 + 4);
  CHECK(vit::preset("vit-small").dim == 384);
  CHECK(vit::preset("vit-base").heads == 12);
  CHECK_THROWS_WITH_AS(vit::preset("vit-huge"), "unknown model 'vit-huge': expected vit-tiny, vit-small or vit-base", ValueError);
  c.patch_size = 5;
  CHECK_THROWS_WITH_AS(vit::VisionTransformer(c, Device::cpu(), 1), "ViT: patch size 5 does not divide the image size 16",
                       ValueError);
}

TEST_CASE("ViT forward and backward on the CPU: a finite loss near log(classes), gradients everywhere") {
  const test::VitRun run = test::run_vit(test::small_vit_config(), Device::cpu());
  CHECK(run.loss == doctest::Approx(std::log(10.0)).epsilon(0.1));
  for (const auto& [name, grad] : run.grads) {
    CAPTURE(name);
    double norm = 0;
    for (double g : grad) norm += g * g;
    CHECK(std::isfinite(norm));
    CHECK(norm > 0);
  }
}
