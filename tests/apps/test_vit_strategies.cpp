// Backward strategies on the ViT (apps/vit/strategies.h): every matmul slot of every block gets
// an object of its own (the two operand gradients of the attention scores too, issue 12), the
// installed slots are listed as run, and recomputing fc1 with a sampled fc1 is refused.
#include <doctest/doctest.h>

#include <set>

#include "apps/vit/strategies.h"
#include "ops/matmul/sampled.h"
#include "tests/apps/vit_fixture.h"

using namespace tg;

namespace {

StrategyConfig wta_crs() {
  StrategyConfig c;
  c.kind = StrategyKind::wta_crs;
  c.ratio = 0.3;
  return c;
}

}  // namespace

TEST_CASE("every slot gets its own strategy object: attn-scores has one per operand gradient") {
  vit::VisionTransformer model(test::with_explicit_attention(test::small_vit_config()), Device::cpu(), 1);
  const int64_t installed = vit::install_strategies(model, wta_crs(), vit::parse_targets("all"), {0, 1});
  CHECK(installed == 2 * 7);
  std::set<const BackwardStrategy*> objects;
  for (const auto& block : model.blocks) {
    std::vector<std::string> names;
    for (const nn::MatmulSlot& slot : block->matmul_slots()) {
      objects.insert(slot.strategy->get());
      names.push_back(slot.name);
    }
    CHECK(names == std::vector<std::string>{"qkv", "proj", "fc1", "fc2", "attn-scores.dq", "attn-scores.dk",
                                            "attn-context"});
    CHECK(block->attn->scores_dq_strategy != block->attn->scores_dk_strategy);
  }
  CHECK(objects.size() == 14);
  // A training step leaves the two score-side proxies different (dS's columns vs its rows).
  const Tensor images = test::random_tensor({4, 3, 16, 16}, 5, -1, 1);
  backward(cross_entropy(model.forward(images), from_vector<int64_t>({1, 2, 3, 4}, {4})));
  const auto& dq = dynamic_cast<const SamplingStrategy&>(*model.blocks[0]->attn->scores_dq_strategy);
  const auto& dk = dynamic_cast<const SamplingStrategy&>(*model.blocks[0]->attn->scores_dk_strategy);
  CHECK(dq.proxy().to_vector<float>() != dk.proxy().to_vector<float>());
}

TEST_CASE("sampled_slots lists what is installed, and the state of every slot round-trips") {
  vit::VisionTransformer model(test::with_explicit_attention(test::small_vit_config()), Device::cpu(), 1);
  vit::install_strategies(model, wta_crs(), vit::parse_targets("qkv,attn-scores"), {1});
  const std::vector<vit::SampledSlot> slots = vit::sampled_slots(model);
  REQUIRE(slots.size() == 3);
  CHECK(slots[0].block == 1);
  CHECK(slots[0].slot == "qkv");
  CHECK(slots[1].slot == "attn-scores.dq");
  CHECK(slots[2].slot == "attn-scores.dk");
  CHECK(slots[2].strategy == "wta-crs");
  const std::map<std::string, Tensor> state = vit::strategy_state(model);
  CHECK(state.count("blocks.1.attn-scores.dk.step") == 1);
  CHECK_THROWS_WITH_AS(vit::load_strategy_state(model, {}),
                       "backward strategy of blocks.1.qkv: wta-crs load_state_dict: missing key 'step'", ValueError);
}

TEST_CASE("recomputing fc1 under a sampled fc1 strategy is refused, not silently exact") {
  vit::VisionTransformer model(test::with_explicit_attention(test::small_vit_config()), Device::cpu(), 1);
  vit::install_strategies(model, wta_crs(), vit::parse_targets("fc1"), {0});
  for (const auto& block : model.blocks) block->mlp->set_recompute_gelu(true);
  const Tensor images = test::random_tensor({2, 3, 16, 16}, 6, -1, 1);
  CHECK_THROWS_WITH_AS(model.forward(images),
                       "Mlp: recompute_gelu keeps fc1's input for the recomputation, so fc1's weight gradient is "
                       "exact; its backward strategy must be exact, got wta-crs",
                       ValueError);
}

TEST_CASE("sampling the attention matmuls of a fused-attention model is refused; the linears are fine") {
  vit::VisionTransformer model(test::small_vit_config(), Device::cpu(), 1);
  CHECK_THROWS_WITH_AS(vit::install_strategies(model, wta_crs(), vit::parse_targets("qkv,attn-context"), {0}),
                       "the attention matmuls (attn-context) can only be sampled with the explicit attention "
                       "(VitConfig::fused_attention false, train_vit --attention explicit); the fused attention has "
                       "no matmul nodes",
                       ValueError);
  CHECK(vit::install_strategies(model, wta_crs(), vit::parse_targets("qkv,proj,fc1,fc2"), {0, 1}) == 2 * 4);
}
