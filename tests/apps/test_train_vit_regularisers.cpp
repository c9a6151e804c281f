// train_vit's fine-tuning and regulariser flags: --init-from --reset-head (every tensor but the
// classifier equals the file's, the head keeps timm's init, the class-count error suggests the
// flag), the flag errors of --trivial-augment / --mixup / --cutmix / --drop-path / --model-ema,
// timm's linear drop-path rates over depth, the EMA evaluated and checkpointed, and a bitwise
// resume with every regulariser on.
#include <doctest/doctest.h>

#include <cstring>

#include "apps/vit/vit.h"
#include "core/error.h"
#include "nn/safetensors.h"
#include "tests/apps/train_vit_fixture.h"
#include "tests/support/test_support.h"

using namespace tg;
using test::parse_args;
using test::run;
using test::with;

namespace {

std::string parse_error(const std::vector<std::string>& args) {
  return test::thrown_message([&] { parse_args(args); });
}

// The geometry of test::tiny_run_args() (Fashion-MNIST: one channel, 10 classes).
vit::VitConfig tiny_config(int64_t classes) {
  vit::VitConfig config = vit::preset("vit-tiny");
  config.depth = 1;
  config.image_size = 28;
  config.patch_size = 7;
  config.in_channels = 1;
  config.num_classes = classes;
  return config;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor x = a.raw_contiguous().to(Device::cpu()), y = b.raw_contiguous().to(Device::cpu());
  return x.shape() == y.shape() && std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;
}

std::vector<double> eval_accuracies(const std::string& metrics) {
  std::vector<double> out;
  for (const nlohmann::json& r : test::read_jsonl(metrics))
    if (r["type"] == "eval") out.push_back(r["test_acc"].get<double>());
  return out;
}

}  // namespace

TEST_CASE("--reset-head loads every tensor but the classifier, which keeps timm's init for the new class count") {
  test::ScratchDir dir("train_vit_reset_head");
  const std::string file = dir / "w.safetensors";
  const vit::VisionTransformer pretrained(tiny_config(100), Device::cpu(), 3);
  vit::save_weights(pretrained, file);

  vit::VisionTransformer model(tiny_config(10), Device::cpu(), 4);
  vit::load_weights(model, file, vit::HeadInit::reset);
  const nn::StateDict loaded = model.state_dict(), saved = pretrained.state_dict();
  const vit::VisionTransformer fresh(tiny_config(10), Device::cpu(), 4);
  for (const auto& [name, tensor] : loaded) {
    CAPTURE(name);
    const bool head = name.rfind("head.", 0) == 0;
    CHECK(same_bytes(tensor, head ? fresh.state_dict().at(name) : saved.at(name)));
  }
  CHECK(model.head->weight.shape() == Shape{10, 192});
  CHECK(test::thrown_message([&] {
          nn::StateDict no_head = saved;
          no_head.erase("head.bias");
          vit::load_weights(model, no_head, vit::HeadInit::reset);
        }) == "load_weights: missing key 'head.bias' (resetting the head replaces the file's classifier, so the file "
              "must have one)");
  CHECK(test::thrown_message([&] {
          nn::StateDict wrong = saved;
          wrong["head.weight"] = zeros({100, 64});
          vit::load_weights(model, wrong, vit::HeadInit::reset);
        }) == "load_weights: key 'head.weight' has shape [100, 64] in the state dict; resetting the head needs "
              "[classes, 192] for the model's [10, 192]");

  // train_vit says what it did (without the flag the mismatch suggests it: test_train_vit.cpp).
  std::string output;
  run(with(test::tiny_run_args(), {"--init-from", file, "--reset-head", "--max-steps", "1"}), &output);
  CHECK(output.find("initialized the model from " + file + " except the classifier: head reset for 10 classes (the "
                    "file's has 100), trunc_normal(0.02) weight and zero bias\n") != std::string::npos);
  CHECK(output.find("init from         " + file + ", head reset\n") != std::string::npos);
  CHECK(parse_error({"--reset-head"}) ==
        "--reset-head needs --init-from FILE (it re-initialises the classifier of the weights loaded from FILE)");
}

TEST_CASE("the regulariser flags are refused with one clear message") {
  CHECK(parse_error({"--mixup", "-1"}) == "--mixup and --cutmix must be >= 0 (0: off), got -1 and 0");
  CHECK(parse_error({"--cutmix", "inf"}) == "--cutmix must be a finite number, got inf");
  CHECK(parse_error({"--mixup-prob", "0.5"}) ==
        "--mixup-prob has no effect without --mixup or --cutmix (give an alpha > 0)");
  CHECK(parse_error({"--mixup", "0.8", "--mixup-prob", "1.5"}) == "--mixup-prob must be in [0, 1], got 1.5");
  CHECK(parse_error({"--mixup", "0.8", "--mixup-switch-prob", "0.3"}) ==
        "--mixup-switch-prob chooses between mixup and cutmix, so it needs both --mixup and --cutmix > 0, got 0.8 "
        "and 0");
  CHECK(parse_error({"--drop-path", "1"}) == "--drop-path must be in [0, 1), got 1");
  CHECK(parse_error({"--drop-path", "nan"}) == "--drop-path must be a finite number, got nan");
  CHECK(parse_error({"--model-ema-decay", "0.99"}) == "--model-ema-decay has no effect without --model-ema");
  CHECK(parse_error({"--model-ema", "--model-ema-decay", "1"}) == "--model-ema-decay must be in [0, 1), got 1");
}

TEST_CASE("--drop-path rises linearly over the blocks from 0, as timm's linspace(0, drop_path_rate, depth)") {
  vit::VitConfig config = tiny_config(10);
  config.depth = 4;
  config.drop_path_rate = 0.3;
  const vit::VisionTransformer model(config, Device::cpu(), 1);
  const double expected[] = {0, 0.1, 0.2, 0.3};
  for (size_t i = 0; i < 4; ++i) CHECK(model.blocks[i]->drop_path_rate() == doctest::Approx(expected[i]).epsilon(1e-12));
  config.depth = 1;
  CHECK(vit::VisionTransformer(config, Device::cpu(), 1).blocks[0]->drop_path_rate() == 0);
}

TEST_CASE("--model-ema evaluates the averaged weights and checkpoints them") {
  test::ScratchDir dir("train_vit_ema");
  std::vector<std::string> base = with(test::tiny_run_args(), {"--max-steps", "4"});
  for (const auto& [flag, value] : {std::pair{"--epochs", "1"}, {"--patch", "14"}, {"--test-subset", "50"}})
    test::set_flag(base, flag, value);
  run(with(base, {"--metrics-out", dir / "plain.jsonl"}));
  // decay 0: the average is the model after every step, so every evaluation agrees exactly.
  run(with(base, {"--model-ema", "--model-ema-decay", "0", "--metrics-out", dir / "ema0.jsonl"}));
  CHECK(eval_accuracies(dir / "ema0.jsonl") == eval_accuracies(dir / "plain.jsonl"));
  std::string output;
  run(with(base, {"--model-ema", "--model-ema-decay", "0.5", "--save", dir / "ckpt", "--metrics-out", dir / "ema.jsonl"}),
      &output);
  CHECK(output.find(", EMA weights)") != std::string::npos);
  for (const nlohmann::json& r : test::read_jsonl(dir / "ema.jsonl"))
    if (r["type"] == "eval") CHECK(r["weights"] == "ema");
  const train::CheckpointFiles files = train::checkpoint_files(dir / "ckpt");
  const nn::SafetensorsFile model = nn::load_safetensors(files.model), state = nn::load_safetensors(files.train_state);
  int differing = 0;
  for (const auto& [name, tensor] : model.tensors) {
    CAPTURE(name);
    REQUIRE(state.tensors.count("model_ema." + name) == 1);
    differing += !same_bytes(state.tensors.at("model_ema." + name), tensor);
  }
  CHECK(differing > 0);  // the average lags the trained weights
}

TEST_CASE("with every regulariser on, N steps straight equal N/2 steps, save, resume and N/2 steps, bit for bit") {
  std::vector<std::string> args = test::tiny_run_args();
  test::set_flag(args, "--depth", "2");   // block 1 gets the drop-path rate
  // 5 tokens and half the images (still 8 steps per epoch): twice the blocks in less time.
  for (const auto& [flag, value] : {std::pair{"--patch", "14"}, {"--train-subset", "128"}, {"--batch-size", "16"},
                                    {"--test-subset", "50"}})
    test::set_flag(args, flag, value);
  test::check_bitwise_resume(with(args, {"--trivial-augment", "--mixup", "0.8", "--cutmix", "1.0", "--drop-path", "0.2",
                                         "--model-ema", "--model-ema-decay", "0.9"}));
}

TEST_CASE("a checkpoint written before the regulariser flags existed resumes as trained with them off") {
  nlohmann::json old = train::to_json(parse_args({}));
  for (const char* field : {"trivial_augment", "mixup", "cutmix", "mixup_prob", "mixup_switch_prob", "drop_path",
                            "model_ema", "model_ema_decay"})
    REQUIRE(old.erase(field) == 1);
  CHECK(train::trajectory_differences(old, train::to_json(parse_args({}))).empty());
  CHECK(train::trajectory_differences(old, train::to_json(parse_args({"--mixup", "0.8"}))) ==
        std::vector<std::string>{"--mixup 0.0 (checkpoint) vs 0.8 (this run)"});
}
