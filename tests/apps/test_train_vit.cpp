// train_vit in-process: flag validation messages, the CPU recipe, strategy block lists, the
// metrics records, the memory report, and the exact (bitwise) continuation of a resumed run;
// the checks issue 14 added (non-finite flags, --save checked early, epochs x steps overflow).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "apps/train_vit/checkpoint.h"
#include "apps/train_vit/trainer.h"
#include "apps/vit/vit.h"
#include "core/error.h"
#include "nn/safetensors.h"
#include "tests/apps/train_vit_fixture.h"
#include "tests/support/test_support.h"

using namespace tg;
using test::parse_args;
using test::run;
using test::set_flag;
using test::with;

namespace {

std::string parse_error(const std::vector<std::string>& args) {
  return test::thrown_message([&] { parse_args(args); });
}


}  // namespace

TEST_CASE("train_vit rejects bad flags and combinations with one clear message") {
  CHECK(parse_error({"--backward", "wta-crs", "--ratio", "1.5"}) == "--ratio must be in (0, 1], got 1.5");
  CHECK(parse_error({"--backward", "wta-crs", "--ratio", "0"}) == "--ratio must be in (0, 1], got 0");
  CHECK(parse_error({"--backward", "wta-crs", "--wta-targets", "qkv,mlp"}) ==
        "--wta-targets: unknown target 'mlp': expected a comma list of qkv, proj, fc1, fc2, attn-scores, attn-context "
        "(or all)");
  CHECK(parse_error({"--patch", "5", "--img", "32"}) ==
        "--patch 5 does not divide --img 32 (the image must split into whole patches)");
  CHECK(parse_error({"--backward", "topk", "--depth", "4", "--wta-blocks", "0-4"}) ==
        "--wta-blocks: block range '0-4' is outside the model's blocks 0-3");
  CHECK(parse_error({"--backward", "topk", "--wta-blocks", "1-x"}) ==
        "--wta-blocks: bad block list '1-x': expected all or items like 3 and 0-5, comma separated");
  CHECK(parse_error({"--ratio", "0.5"}) ==
        "--ratio has no effect with --backward exact; choose a sampled backward (--backward wta-crs, crs, topk or wta-wor)");
  CHECK(parse_error({"--backward", "sampled"}) ==
        "--backward: unknown value 'sampled' (expected exact, wta-crs, crs, topk, wta-wor)");
  CHECK(parse_error({"--model", "vit-huge"}) == "--model: unknown value 'vit-huge' (expected vit-tiny, vit-small, vit-base)");
  CHECK(parse_error({"--precision", "fp16"}) == "--precision: unknown value 'fp16' (expected fp32, tf32, bf16)");
  CHECK(parse_error({"--attention", "flash"}) == "--attention: unknown value 'flash' (expected fused, explicit)");
  CHECK(parse_error({"--attention-backend", "flash"}) ==
        "--attention-backend: unknown value 'flash' (expected auto, cudnn, tapegrad)");
  CHECK(parse_error({"--backward", "wta-crs", "--wta-targets", "all", "--attention", "fused"}) ==
        "--attention fused has no attention matmuls to sample, but --wta-targets includes attn-scores or "
        "attn-context: use --attention explicit, or leave them out (e.g. --wta-targets qkv,proj,fc1,fc2)");
  CHECK(parse_error({"--dataset", "cifar10"}) ==
        "--dataset cifar10 needs --data-dir DIR: the folder of its binary version (see README.md, 'Training the ViT')");
  CHECK(parse_error({"--resume", "/nonexistent/ckpt"}) ==
        "--resume /nonexistent/ckpt: no checkpoint there (expected /nonexistent/ckpt/latest, written by --save, or a "
        "version folder with model.safetensors and train_state.safetensors)");
  CHECK(parse_error({"--init-from", "a.safetensors", "--resume", "b"}) ==
        "--resume and --init-from exclude each other (a resumed run takes its weights from the checkpoint)");
  CHECK(parse_error({"--label-smoothing", "1"}) == "--label-smoothing must be in [0, 1), got 1");
  CHECK(parse_error({"--saved-dtype", "fp8"}) == "--saved-dtype must be same or bf16, got 'fp8'");
  // CLI11's own errors keep its text and point at --help.
  CHECK(parse_error({"--no-such-flag"}).find("--no-such-flag") != std::string::npos);
  CHECK(parse_error({"--epochs", "two"}).find("train_vit --help lists the flags") != std::string::npos);
  if (!cuda_is_available()) {
    const std::string message = parse_error({"--device", "cuda"});
    CHECK(message.find("device cuda:0 requested, but") == 0);
    CHECK(parse_error({"--device", "cpu", "--precision", "tf32"}) ==
          "--precision tf32 needs a CUDA device (TF32 is a tensor-core mode), but the run is on cpu");
  }
  // Non-finite values pass a sign check; each is refused naming the flag.
  CHECK(parse_error({"--lr", "inf"}) == "--lr must be a finite number, got inf");
  CHECK(parse_error({"--weight-decay", "inf"}) == "--weight-decay must be a finite number, got inf");
  CHECK(parse_error({"--warmup-epochs", "inf"}) == "--warmup-epochs must be a finite number, got inf");
  CHECK(parse_error({"--clip-grad", "nan"}) == "--clip-grad must be a finite number, got nan");
  CHECK(parse_error({"--epochs", "2", "--warmup-epochs", "3"}) == "--warmup-epochs must be in [0, --epochs] = [0, 2], got 3");
  // The attention follows the targets unless given: explicit when the attention matmuls are sampled.
  CHECK(parse_args({}).attention == "fused");
  CHECK(parse_args({"--backward", "wta-crs", "--wta-targets", "all"}).attention == "explicit");
  CHECK(parse_args({"--backward", "wta-crs", "--wta-targets", "qkv,fc2,attn-context"}).attention == "explicit");
  // The default targets are the four linears, which the fused attention leaves to sample.
  CHECK(parse_args({}).wta_targets == "qkv,proj,fc1,fc2");
  CHECK(parse_args({"--backward", "wta-crs"}).attention == "fused");
  CHECK(parse_args({"--precision", "bf16"}).precision == "bf16");
  // CUDA graphs: on by default on CUDA; off on the CPU.
  if (!cuda_is_available()) CHECK(parse_args({}).cuda_graphs == "off");
  CHECK(parse_args({"--device", "cpu"}).cuda_graphs == "off");
  CHECK(parse_error({"--device", "cpu", "--cuda-graphs", "on"}) ==
        "--cuda-graphs on needs a CUDA device, but the run is on cpu");
  CHECK(parse_error({"--cuda-graphs", "maybe"}) == "--cuda-graphs: unknown value 'maybe' (expected on, off)");

  CHECK_THROWS_AS(parse_args({"--ratio", "2", "--backward", "wta-crs"}), ValueError);
}

TEST_CASE("--save is checked before any work: a file, or a folder that cannot be made") {
  test::ScratchDir dir("train_vit_save_check");
  { std::ofstream(dir / "file") << "x"; }
  CHECK(parse_error({"--device", "cpu", "--save", dir / "file"}) ==
        "--save " + (dir / "file") + ": it exists and is not a folder (expected a folder for the checkpoints)");
  CHECK(parse_error({"--device", "cpu", "--save", dir / "file/sub"}) ==
        "--save " + (dir / "file/sub") + ": cannot create the folder: Not a directory");
  CHECK(parse_error({"--device", "cpu", "--save", "/proc/tapegrad-ckpt"})
            .rfind("--save /proc/tapegrad-ckpt: cannot create the folder: ", 0) == 0);
  CHECK(parse_args({"--device", "cpu", "--save", dir / "ok"}).save == dir / "ok");
}

TEST_CASE("--epochs times the steps per epoch is overflow-checked before step 1") {
  // 512 images in batches of 32: 16 steps per epoch, and 16 x 10^18 > 2^63.
  std::vector<std::string> args = test::tiny_run_args();
  set_flag(args, "--epochs", "1000000000000000000");
  set_flag(args, "--train-subset", "512");
  std::string message;
  try {
    run(args);
  } catch (const ValueError& e) {
    message = e.what();
  }
  CHECK(message == "--epochs 1000000000000000000 x 16 steps per epoch is more than 2^63 steps; expected a run that can end");
}

TEST_CASE("train_vit on a CPU fills unset flags with the CPU-sized run; given flags win") {
  const train::Options o = parse_args({"--device", "cpu", "--epochs", "1"});
  CHECK(o.resolved_device == Device::cpu());
  CHECK(o.cpu_recipe);
  CHECK(o.model == "vit-tiny");
  CHECK(train::model_depth(o) == 3);
  CHECK(o.img == 28);
  CHECK(o.patch == 7);
  CHECK(o.epochs == 1);
  CHECK(o.recipe_flags.find("--epochs") == std::string::npos);
  CHECK(o.recipe_flags.find("--model vit-tiny") != std::string::npos);
  CHECK(o.optimizer == "adamw");
  CHECK(o.weight_decay == 0.05);
  CHECK(parse_args({"--device", "cpu", "--optimizer", "adam"}).weight_decay == 0);
  CHECK(parse_args({"--device", "cpu", "--optimizer", "sgd", "--weight-decay", "0.01"}).weight_decay == 0.01);
  CHECK(train::describe(o).find("model             vit-tiny, depth 3, patch 7, img 28") != std::string::npos);
}

TEST_CASE("--wta-blocks selects blocks by index and range") {
  train::Options o = parse_args({"--device", "cpu", "--depth", "12"});
  CHECK(train::strategy_blocks(o).size() == 12);
  o.wta_blocks = "0-2,5,11,1";
  CHECK(train::strategy_blocks(o) == std::set<int64_t>{0, 1, 2, 5, 11});
  o.wta_targets = "fc2,qkv";
  CHECK(train::strategy_targets(o) == std::set<nn::MatmulTarget>{nn::MatmulTarget::qkv, nn::MatmulTarget::fc2});
}

TEST_CASE("the estimator's knobs: --wta-proxy, --wta-ema-beta, --wta-k-min, --wta-alpha") {
  const StrategyConfig defaults = train::strategy_config(parse_args({"--device", "cpu", "--backward", "wta-crs"}));
  CHECK(defaults.proxy == ProxyKind::position_ema);
  CHECK(defaults.ema_beta == 0.9);
  CHECK(defaults.k_min == 10);
  CHECK(defaults.alpha == 0.05);
  const StrategyConfig set = train::strategy_config(parse_args({"--device", "cpu", "--backward", "wta-crs", "--wta-proxy",
                                                                "none", "--wta-ema-beta", "0.5", "--wta-k-min", "32",
                                                                "--wta-alpha", "0.2"}));
  CHECK(set.proxy == ProxyKind::none);
  CHECK(set.ema_beta == 0.5);
  CHECK(set.k_min == 32);
  CHECK(set.alpha == 0.2);
  CHECK(parse_error({"--backward", "wta-crs", "--wta-ema-beta", "1.5"}) == "--wta-ema-beta must be in [0, 1], got 1.5");
  CHECK(parse_error({"--backward", "wta-crs", "--wta-alpha", "-0.1"}) == "--wta-alpha must be in [0, 1], got -0.1");
  CHECK(parse_error({"--backward", "wta-crs", "--wta-k-min", "0"}) == "--wta-k-min must be at least 1, got 0");
  CHECK(parse_error({"--wta-alpha", "0.2"}) ==
        "--wta-alpha has no effect with --backward exact; choose a sampled backward (--backward wta-crs, crs, topk or "
        "wta-wor)");
  // They reach the sampler: without the proxy the same seed draws other rows, and the run differs.
  test::ScratchDir dir("train_vit_estimator_knobs");
  auto losses = [&](const std::vector<std::string>& extra, const std::string& name) {
    std::string output;
    const std::string file = dir / name;
    (void)run(with(with(test::tiny_run_args(), {"--backward", "wta-crs", "--ratio", "0.3", "--max-steps", "4",
                                                "--metrics-out", file}),
                   extra),
              &output);
    CHECK(output.find(extra.empty() ? "proxy position-ema (beta 0.9), k min 10, alpha 0.05" : "proxy none, k min 10") !=
          std::string::npos);
    std::vector<double> out;
    for (const nlohmann::json& r : test::read_jsonl(file))
      if (r["type"] == "train") out.push_back(r["loss"].get<double>());
    return out;
  };
  const std::vector<double> with_proxy = losses({}, "proxy.jsonl"), without = losses({"--wta-proxy", "none"}, "none.jsonl");
  REQUIRE(with_proxy.size() == 4);
  CHECK(with_proxy.front() == without.front());  // the first loss comes before any sampled update
  CHECK(with_proxy != without);
  // A checkpoint's trajectory fields name them: resuming with another value is refused.
  nlohmann::json saved = train::to_json(parse_args({"--device", "cpu", "--backward", "wta-crs"}));
  const nlohmann::json current = train::to_json(parse_args({"--device", "cpu", "--backward", "wta-crs", "--wta-k-min", "32"}));
  CHECK(train::trajectory_differences(saved, current) ==
        std::vector<std::string>{"--wta-k-min 10 (checkpoint) vs 32 (this run)"});
  saved.erase("wta_k_min");  // a checkpoint from before the knob was trained with its default
  CHECK(train::trajectory_differences(saved, train::to_json(parse_args({"--device", "cpu", "--backward", "wta-crs"})))
            .empty());
}

TEST_CASE("without clipping the train records carry no gradient norm or clip factor") {
  test::ScratchDir dir("train_vit_no_clip_metrics");
  const std::string file = dir / "m.jsonl";
  (void)run(with(test::tiny_run_args(), {"--max-steps", "3", "--clip-grad", "0", "--metrics-out", file}));
  int train_records = 0;
  for (const nlohmann::json& r : test::read_jsonl(file))
    if (r["type"] == "train") {
      ++train_records;
      CHECK_FALSE(r.contains("grad_norm"));
      CHECK_FALSE(r.contains("clip_factor"));
    }
  CHECK(train_records == 3);
}

TEST_CASE("--optimizer-in-backward: the same losses bit for bit, and no clipping") {
  CHECK(parse_error({"--device", "cpu", "--optimizer-in-backward"}) ==
        "--optimizer-in-backward updates each parameter as soon as its gradient is complete, so the global gradient "
        "norm that --clip-grad 1 needs never exists: give --clip-grad 0");
  test::ScratchDir dir("train_vit_optimizer_in_backward");
  int runs = 0;
  auto losses = [&](const std::vector<std::string>& extra) {
    std::string output;
    const std::string file = dir / ("run" + std::to_string(runs++) + ".jsonl");
    (void)run(with(with(test::tiny_run_args(), extra), {"--max-steps", "6", "--clip-grad", "0", "--metrics-out", file}),
              &output);
    CHECK((output.find(", applied in backward") != std::string::npos) == (extra.size() > 0));
    std::vector<double> out;
    for (const nlohmann::json& r : test::read_jsonl(file))
      if (r["type"] == "train") out.push_back(r["loss"].get<double>());
    return out;
  };
  const std::vector<double> plain = losses({});
  REQUIRE(plain.size() == 6);
  CHECK(losses({"--optimizer-in-backward"}) == plain);
}

// (What checkpointing saves in memory is tested on the model: tests/apps/test_vit.cpp.)
TEST_CASE("--checkpoint-blocks: the blocks rerun in backward, and the losses stay bit for bit") {
  CHECK(train::checkpointed_blocks(parse_args({"--device", "cpu", "--depth", "4"})).empty());
  CHECK(train::checkpointed_blocks(parse_args({"--device", "cpu", "--depth", "4", "--checkpoint-blocks", "all"})) ==
        std::set<int64_t>{0, 1, 2, 3});
  CHECK(parse_error({"--device", "cpu", "--depth", "4", "--checkpoint-blocks", "2-7"}) ==
        "--checkpoint-blocks: block range '2-7' is outside the model's blocks 0-3");
  test::ScratchDir dir("train_vit_checkpoint_blocks");
  int runs = 0;
  auto losses = [&](const std::string& blocks, const std::vector<std::string>& extra) {
    std::string output;
    const std::string file = dir / ("run" + std::to_string(runs++) + ".jsonl");
    (void)run(with(with(test::tiny_run_args(), extra),
                   {"--max-steps", "6", "--checkpoint-blocks", blocks, "--metrics-out", file}),
              &output);
    CHECK(output.find("checkpoint blocks " + blocks) != std::string::npos);
    std::vector<double> out;
    for (const nlohmann::json& r : test::read_jsonl(file))
      if (r["type"] == "train") out.push_back(r["loss"].get<double>());
    return out;
  };
  // Recomputed norm outputs, too, change nothing (tests/apps/test_vit.cpp checks the bytes).
  CHECK(losses("none", {"--recompute-norms"}) == losses("none", {}));
  // Exact, and sampled: the checkpointed blocks' linears sample in the rerun, from the same
  // random streams (keyed by the step, not by when the sample is drawn), so the run is the same.
  for (const std::vector<std::string>& extra :
       std::vector<std::vector<std::string>>{{}, {"--backward", "wta-crs", "--ratio", "0.5"}}) {
    CAPTURE(extra.size());
    const std::vector<double> plain = losses("none", extra), checkpointed = losses("all", extra);
    REQUIRE(plain.size() == 6);
    CHECK(checkpointed == plain);
  }
}

TEST_CASE("the metrics' config record and the memory report list the sampled slots per block as installed") {
  test::ScratchDir dir("train_vit_sampled_slots");
  std::string output;
  std::vector<std::string> args = test::tiny_run_args();
  *(std::find(args.begin(), args.end(), "--depth") + 1) = "2";
  args = with(args, {"--max-steps", "2", "--metrics-out", dir / "m.jsonl",
                                           "--memory-report", "--backward", "wta-crs", "--ratio", "0.5",
                                           "--wta-targets", "qkv,attn-scores", "--wta-blocks", "1"});
  (void)run(args, &output);
  const nlohmann::json config = test::read_jsonl(dir / "m.jsonl").front();
  REQUIRE(config["type"] == "config");
  const nlohmann::json expected = nlohmann::json::parse(
      R"([{"block": 1, "slot": "qkv", "strategy": "wta-crs"},
          {"block": 1, "slot": "attn-scores.dq", "strategy": "wta-crs"},
          {"block": 1, "slot": "attn-scores.dk", "strategy": "wta-crs"}])");
  CHECK(config["sampled"] == expected);
  CHECK(output.find("sampled (as run): block 1: qkv (wta-crs), attn-scores.dq (wta-crs), attn-scores.dk (wta-crs)\n") !=
        std::string::npos);
}

TEST_CASE("--recompute-gelu with a sampled fc1 is refused before any work") {
  CHECK(parse_error({"--device", "cpu", "--backward", "wta-crs", "--recompute-gelu"}) ==
        "--recompute-gelu keeps fc1's input for the recomputation, so a sampled fc1 would save nothing (its weight "
        "gradient would be exact): leave fc1 out of --wta-targets (e.g. --wta-targets qkv,proj,fc2) or drop "
        "--recompute-gelu");
  CHECK(parse_error({"--device", "cpu", "--backward", "wta-crs", "--recompute-gelu", "--wta-targets", "qkv,fc2"}) == "(no error)");
}

TEST_CASE("train_vit writes JSON Lines records with the documented keys, and the memory report") {
  test::ScratchDir dir("train_vit_metrics");
  std::string output;
  const train::RunSummary summary =
      run(with(test::tiny_run_args(), {"--max-steps", "10", "--metrics-out", dir / "m.jsonl", "--memory-report"}),
          &output);
  CHECK(summary.steps == 10);
  CHECK(summary.peak_allocated_bytes > 0);
  std::vector<nlohmann::json> records = test::read_jsonl(dir / "m.jsonl");
  REQUIRE(!records.empty());
  const nlohmann::json config = records.front();
  CHECK(config["type"] == "config");
  CHECK(config["options"]["backward"] == "exact");
  CHECK(config["sampled"] == nlohmann::json::array());
  records.erase(records.begin());
  CHECK(output.find("sampled (as run): nothing (every matmul exact)") != std::string::npos);
  int train_records = 0, eval_records = 0;
  for (const nlohmann::json& r : records) {
    CAPTURE(r.dump());
    for (const char* key : {"type", "epoch", "step", "loss", "lr", "img_per_s", "allocated_bytes",
                            "peak_allocated_bytes", "reserved_bytes", "peak_reserved_bytes", "inactive_split",
                            "inactive_split_bytes", "num_alloc_retries", "num_ooms", "elapsed_s"})
      CHECK(r.contains(key));
    if (r["type"] == "eval") {
      ++eval_records;
      CHECK(r.contains("test_acc"));
      CHECK(r["test_acc"].get<double>() >= 0);
      CHECK(r["test_acc"].get<double>() <= 100);
    } else {
      ++train_records;
      CHECK(r["type"] == "train");
      CHECK(r["step"].get<int64_t>() == train_records);
      CHECK(std::isfinite(r["loss"].get<double>()));
      // Clipping at the default 1.0, one step per record: the factor it applied to that norm.
      const double norm = r["grad_norm"].get<double>(), factor = r["clip_factor"].get<double>();
      CHECK(norm > 0);
      CHECK(factor == doctest::Approx(std::min(1.0, 1.0 / (norm + 1e-6))).epsilon(1e-6));
    }
  }
  CHECK(train_records == 10);
  CHECK(eval_records == 2);  // after epoch 1 (step 8) and at the end (step 10)
  CHECK(records.back()["epoch"] == 2);
  // The fused attention is one node ("attention"); the explicit one's are attn-scores, softmax, attn-context.
  for (const char* kind : {"qkv", "proj", "fc1", "fc2", "attention", "layer-norm", "gelu", "head", "patch-embed"}) {
    CAPTURE(kind);
    CHECK(output.find("\n  " + std::string(kind) + " ") != std::string::npos);
  }
  CHECK(output.find("Saved for backward at the peak") != std::string::npos);
  CHECK(output.find("summary: best test acc") != std::string::npos);
}

TEST_CASE("N steps straight equal N/2 steps, save, resume and N/2 steps, bit for bit") {
  test::check_bitwise_resume(test::tiny_run_args());
}

TEST_CASE("in bf16 mixed precision with explicit attention too") {
  test::check_bitwise_resume(test::with(test::tiny_run_args(), {"--precision", "bf16", "--attention", "explicit"}));
}

TEST_CASE("with WTA-CRS too: the strategies' step counters and proxies are in the checkpoint") {
  test::check_bitwise_resume(test::with(test::tiny_run_args(), {"--backward", "wta-crs", "--ratio", "0.5"}));
}

TEST_CASE("--init-from's loader is strict: a head of another class count names the key and both shapes, or --reset-head") {
  test::ScratchDir dir("train_vit_init");
  vit::VitConfig config = vit::preset("vit-tiny");
  config.depth = 1;
  config.image_size = 28;
  config.patch_size = 7;
  config.in_channels = 1;
  config.num_classes = 100;
  nn::save_safetensors(dir / "w.safetensors", vit::VisionTransformer(config, Device::cpu(), 3).state_dict());
  config.num_classes = 10;
  vit::VisionTransformer model(config, Device::cpu(), 4);
  CHECK_THROWS_WITH_AS(vit::load_weights(model, dir / "w.safetensors"),
                       "load_state_dict: key 'head.weight' has shape [100, 192] in the state dict, but the model "
                       "expects [10, 192]",
                       ShapeError);
  // train_vit --init-from names the file.
  std::string message;
  try {
    run(with(test::tiny_run_args(), {"--init-from", dir / "w.safetensors"}));
  } catch (const ShapeError& e) {
    message = e.what();
  }
  CHECK(message == "--init-from '" + (dir / "w.safetensors") +
                       "': the file's classifier has 100 classes (head.weight [100, 192]) but --dataset fashion-mnist "
                       "has 10; pass --reset-head to load everything else and re-initialise the head");
}
