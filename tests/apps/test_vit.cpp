// The ViT model: timm's parameter names and shapes, presets, and a CPU forward/backward.
#include <doctest/doctest.h>

#include "core/allocator.h"
#include "ops/precision.h"
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

TEST_CASE("fused and explicit attention give the same loss and gradients") {
  const test::VitRun fused = test::run_vit(test::small_vit_config(), Device::cpu());
  const test::VitRun plain = test::run_vit(test::with_explicit_attention(test::small_vit_config()), Device::cpu());
  CHECK(fused.loss == doctest::Approx(plain.loss).epsilon(1e-6));
  REQUIRE(fused.grads.size() == plain.grads.size());
  for (size_t i = 0; i < fused.grads.size(); ++i) {
    CAPTURE(fused.grads[i].first);
    CHECK(test::relative_error(fused.grads[i].second, plain.grads[i].second) < 1e-4);
  }
}

TEST_CASE("bf16 autocast: f32 logits and parameter gradients, values within bf16 rounding of f32") {
  const vit::VitConfig config = test::small_vit_config();
  const vit::VisionTransformer model(config, Device::cpu(), 1234);
  const test::VitBatch batch = test::vit_batch(config, Device::cpu());
  const test::VitRun in_f32 = test::vit_step(model, batch);
  PrecisionGuard guard(precision_mode("bf16"));
  CHECK(model.forward(batch.images).dtype() == DType::f32);
  const test::VitRun in_bf16 = test::vit_step(model, batch);
  for (const auto& [name, p] : model.named_parameters()) {
    CAPTURE(name);
    CHECK(p.dtype() == DType::f32);
    CHECK(p.grad().dtype() == DType::f32);
  }
  CHECK(in_bf16.loss == doctest::Approx(in_f32.loss).epsilon(1e-2));
  CHECK(in_bf16.loss != in_f32.loss);  // really computed in bf16
  for (size_t i = 0; i < in_f32.grads.size(); ++i) {
    CAPTURE(in_f32.grads[i].first);
    CHECK(test::relative_error(in_bf16.grads[i].second, in_f32.grads[i].second) < 0.1);
  }
}

TEST_CASE("bf16 autocast keeps the blocks' activations in bf16: about half the saved bytes of f32") {
  const vit::VitConfig config = test::small_vit_config();
  const vit::VisionTransformer model(config, Device::cpu(), 1234);
  // A batch whose activations outweigh the bf16 weight copies the linears keep for dX.
  const test::VitBatch batch = test::vit_batch(config, Device::cpu(), 64);
  auto saved_after_forward = [&] {
    const int64_t before = allocator_for(Device::cpu()).stats().allocated_bytes[0].current;
    const Tensor loss = cross_entropy(model.forward(batch.images), batch.targets);
    return allocator_for(Device::cpu()).stats().allocated_bytes[0].current - before;
  };
  const int64_t f32_bytes = saved_after_forward();
  PrecisionGuard guard(precision_mode("bf16"));
  const int64_t bf16_bytes = saved_after_forward();
  MESSAGE("kept after forward: f32 " << f32_bytes << " B, bf16 " << bf16_bytes << " B");
  // The residual stream LayerNorm keeps stays f32 and the weights' bf16 copies are kept for dX,
  // so the ratio is above one half.
  CHECK(bf16_bytes < 0.7 * static_cast<double>(f32_bytes));
  CHECK(bf16_bytes > 0.4 * static_cast<double>(f32_bytes));
}

// Block checkpointing (nn::Block::set_checkpoint): the same loss and parameter gradients bit for
// bit — in f32 and bf16, with drop path drawing per-sample masks — for far fewer bytes kept
// after the forward.
TEST_CASE("checkpointed blocks give the plain model's loss and gradients bit for bit and keep only block inputs") {
  vit::VitConfig config = test::small_vit_config();
  config.drop_path_rate = 0.2;
  vit::VisionTransformer model(config, Device::cpu(), 1234);
  model.train(true);
  const test::VitBatch batch = test::vit_batch(config, Device::cpu(), 8);
  auto step = [&](bool checkpointed) {
    for (const auto& block : model.blocks) block->set_checkpoint(checkpointed);
    nn::dropout_generator().manual_seed(77);  // the same drop-path draws for both runs
    return test::vit_step(model, batch);
  };
  auto kept_after_forward = [&](bool checkpointed) {
    for (const auto& block : model.blocks) block->set_checkpoint(checkpointed);
    const int64_t before = allocator_for(Device::cpu()).stats().allocated_bytes[0].current;
    const Tensor loss = cross_entropy(model.forward(batch.images), batch.targets);
    return allocator_for(Device::cpu()).stats().allocated_bytes[0].current - before;
  };
  for (const char* precision : {"fp32", "bf16"}) {
    CAPTURE(precision);
    PrecisionGuard guard(precision_mode(precision));
    const test::VitRun plain = step(false), checkpointed = step(true);
    CHECK(checkpointed.loss == plain.loss);
    REQUIRE(checkpointed.grads.size() == plain.grads.size());
    for (size_t i = 0; i < plain.grads.size(); ++i) {
      CAPTURE(plain.grads[i].first);
      CHECK(checkpointed.grads[i].second == plain.grads[i].second);
    }
    const int64_t plain_bytes = kept_after_forward(false), checkpointed_bytes = kept_after_forward(true);
    MESSAGE(std::string(precision) << ": kept after forward, plain " << plain_bytes << " B, checkpointed " << checkpointed_bytes
                      << " B");
    // Each block keeps its f32 input, [8, 17, 192]; the head keeps a little more.
    CHECK(checkpointed_bytes < 0.25 * static_cast<double>(plain_bytes));
  }
  for (const auto& block : model.blocks) block->set_checkpoint(false);
}

// LayerNorm-output recomputation (nn::Block::set_recompute_norms): qkv and fc1 keep nothing of
// their inputs; the loss and every gradient stay bit for bit, in f32 and bf16, and the forward
// keeps less.
TEST_CASE("recomputed norm outputs give the plain model's loss and gradients bit for bit, for fewer kept bytes") {
  const vit::VitConfig config = test::small_vit_config();
  vit::VisionTransformer model(config, Device::cpu(), 1234);
  const test::VitBatch batch = test::vit_batch(config, Device::cpu(), 8);
  auto set = [&](bool on) {
    for (const auto& block : model.blocks) block->set_recompute_norms(on);
  };
  auto kept_after_forward = [&] {
    const int64_t before = allocator_for(Device::cpu()).stats().allocated_bytes[0].current;
    const Tensor loss = cross_entropy(model.forward(batch.images), batch.targets);
    return allocator_for(Device::cpu()).stats().allocated_bytes[0].current - before;
  };
  for (const char* precision : {"fp32", "bf16"}) {
    CAPTURE(std::string(precision));
    PrecisionGuard guard(precision_mode(precision));
    set(false);
    const test::VitRun plain = test::vit_step(model, batch);
    const int64_t plain_bytes = kept_after_forward();
    set(true);
    const test::VitRun recomputed = test::vit_step(model, batch);
    const int64_t recomputed_bytes = kept_after_forward();
    CHECK(recomputed.loss == plain.loss);
    REQUIRE(recomputed.grads.size() == plain.grads.size());
    for (size_t i = 0; i < plain.grads.size(); ++i) {
      CAPTURE(plain.grads[i].first);
      CHECK(recomputed.grads[i].second == plain.grads[i].second);
    }
    // Two [8, 17, 192] norm outputs per block fewer (f32 or bf16).
    const int64_t per_block = 2 * 8 * 17 * 192 * (std::string(precision) == "bf16" ? 2 : 4);
    MESSAGE(std::string(precision) << ": kept after forward, plain " << plain_bytes << " B, recomputed " << recomputed_bytes << " B");
    CHECK(plain_bytes - recomputed_bytes >= static_cast<int64_t>(model.blocks.size()) * per_block);
  }
  set(false);
}
