// train_vit on the GPU: a resumed run continues bit for bit (issue 5: exact resume on GPU too;
// with the regularisers of issue 16 as well);
// a step that does not fit raises OutOfMemoryError after the allocator's free-and-retry, the
// executable exits with 1, and a smaller run afterwards succeeds (issue 14).
#include <doctest/doctest.h>

#include <cstring>

#include "core/allocator.h"
#include "core/error.h"
#include "tests/apps/train_vit_fixture.h"

#include "tests/support/test_support.h"

#if !defined(TRAIN_VIT_EXE) || !defined(TRAIN_VIT_FROM_TEST)
#error "TRAIN_VIT_EXE and TRAIN_VIT_FROM_TEST (where train_vit was built) must be defined"
#endif

using namespace tg;

namespace {

// The tiny run on CUDA, on the synthetic set: the GPU machine has no Fashion-MNIST package.
std::vector<std::string> cuda_run_args() {
  std::vector<std::string> args = test::tiny_run_args();
  args[1] = "cuda";  // "--device", "cpu" leads the tiny run's flags
  return test::with(args, {"--dataset", "synthetic"});
}

}  // namespace

TEST_CASE("CUDA: N steps straight equal N/2 steps, save, resume and N/2 steps, bit for bit") {
  test::check_bitwise_resume(cuda_run_args());
}

TEST_CASE("CUDA: the same with WTA-CRS (strategy state in the checkpoint)") {
  test::check_bitwise_resume(test::with(cuda_run_args(), {"--backward", "wta-crs", "--ratio", "0.5"}));
}

TEST_CASE("CUDA: the same with every regulariser on (host TrivialAugment, mixup/cutmix, drop path, EMA)") {
  std::vector<std::string> args = cuda_run_args();
  test::set_flag(args, "--depth", "2");  // block 1 gets the drop-path rate
  test::check_bitwise_resume(test::with(args, {"--trivial-augment", "--mixup", "0.8", "--cutmix", "1.0", "--drop-path",
                                               "0.2", "--model-ema", "--model-ema-decay", "0.9"}));
}

namespace {
// ViT-B/16 at 224 px on 8192 images in one batch: about 5 GB per [B, T, D] activation and over
// a terabyte for the step, far beyond any one GPU.
std::vector<std::string> too_large_run_args() {
  std::vector<std::string> args = cuda_run_args();
  test::set_flag(args, "--model", "vit-base");
  test::set_flag(args, "--depth", "12");
  test::set_flag(args, "--img", "224");
  test::set_flag(args, "--patch", "16");
  test::set_flag(args, "--train-subset", "8192");
  test::set_flag(args, "--batch-size", "8192");
  test::set_flag(args, "--test-subset", "64");
  return test::with(args, {"--max-steps", "1"});
}
}  // namespace

TEST_CASE("CUDA: an out-of-memory step raises OutOfMemoryError with the breakdown after free-and-retry; "
          "a smaller run in the same process then succeeds") {
  const Device device = Device::cuda(0);
  const auto all = static_cast<size_t>(StatType::all);
  const MemoryStats before = memory_stats(device);
  std::string message;
  try {
    test::run(too_large_run_args());
  } catch (const OutOfMemoryError& e) {
    message = e.what();
  }
  const MemoryStats after = memory_stats(device);
  MESSAGE(message);
  CHECK(message.find("out of memory on cuda:0: tried to allocate ") == 0);
  CHECK(message.find("The device has a total capacity of ") != std::string::npos);
  CHECK(message.find(" is allocated by tapegrad and ") != std::string::npos);
  CHECK(message.find(" is reserved by tapegrad but unallocated.") != std::string::npos);
  CHECK(after.num_alloc_retries > before.num_alloc_retries);  // the cache was flushed and the allocation retried
  CHECK(after.num_ooms == before.num_ooms + 1);
  // The failed step's tensors were all released by the unwinding.
  CHECK(after.allocated_bytes[all].current == before.allocated_bytes[all].current);
  // A run that fits trains in the same process.
  CHECK(test::run(test::with(cuda_run_args(), {"--max-steps", "4"})).steps == 4);
}

TEST_CASE("CUDA: train_vit reports an out-of-memory step on stderr and exits with 1") {
  test::ScratchDir dir("train_vit_oom");
  std::string args;
  for (const std::string& a : too_large_run_args()) args += " '" + a + "'";
  const test::ProcessResult r = test::run_executable(test::built_executable(TRAIN_VIT_EXE, TRAIN_VIT_FROM_TEST), args, dir);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("train_vit: error: out of memory on cuda:0: tried to allocate ") == 0);
  CHECK(r.err.find(" is reserved by tapegrad but unallocated.") != std::string::npos);
}

TEST_CASE("CUDA: a replayed CUDA graph gives bit-identical losses and weights to eager execution over 20 steps") {
  test::ScratchDir dir("train_vit_graphs");
  auto run_with = [&](const std::string& graphs, const std::vector<std::string>& extra) {
    std::string output;
    std::vector<std::string> args = cuda_run_args();
    test::set_flag(args, "--epochs", "3");
    test::run(test::with(args, test::with(extra, {"--max-steps", "20", "--cuda-graphs", graphs, "--save", dir / graphs,
                                                  "--metrics-out", dir / (graphs + ".jsonl")})),
              &output);
    return output;
  };
  for (const std::vector<std::string>& extra :
       std::vector<std::vector<std::string>>{{},
                                             {"--precision", "bf16"},
                                             {"--attention", "explicit"},
                                             {"--backward", "wta-crs", "--ratio", "0.5"},
                                             {"--backward", "wta-wor", "--ratio", "0.3", "--precision", "bf16"},
                                             {"--checkpoint-blocks", "all", "--precision", "bf16"}}) {
    std::string flags;
    for (const std::string& flag : extra) flags += flag + " ";
    CAPTURE(flags);
    const std::string graphed = run_with("on", extra);
    CHECK(graphed.find("cuda graphs: captured the training step at step 3") != std::string::npos);
    run_with("off", extra);
    auto losses = [&](const std::string& name) {
      std::vector<double> out;
      for (const nlohmann::json& r : test::read_jsonl(dir / (name + ".jsonl")))
        if (r["type"] == "train") out.push_back(r["loss"].get<double>());
      return out;
    };
    REQUIRE(losses("on").size() == 20);
    CHECK(losses("on") == losses("off"));
    const nn::SafetensorsFile on = nn::load_safetensors(train::checkpoint_files(dir / "on").model);
    const nn::SafetensorsFile off = nn::load_safetensors(train::checkpoint_files(dir / "off").model);
    REQUIRE(on.tensors.size() == off.tensors.size());
    for (const auto& [name, tensor] : on.tensors) {
      CAPTURE(name);
      CHECK(tensor.to_vector<float>() == off.tensors.at(name).to_vector<float>());
    }
    for (const char* name : {"on", "off", "on.jsonl", "off.jsonl"}) std::filesystem::remove_all(dir.path() / name);
  }
}

TEST_CASE("CUDA: graphs are on by default, off with the regularisers that draw on the host, refused with them") {
  CHECK(test::parse_args({}).cuda_graphs == "on");
  CHECK(test::parse_args({"--backward", "wta-crs"}).cuda_graphs == "on");
  CHECK(test::parse_args({"--mixup", "0.8"}).cuda_graphs == "off");
  std::string message;
  try {
    (void)test::parse_args({"--drop-path", "0.1", "--cuda-graphs", "on"});
  } catch (const NotImplementedError& e) {
    message = e.what();
  }
  CHECK(message ==
        "--cuda-graphs on with --mixup, --cutmix or --drop-path: their random draws are chosen on the host each "
        "step, which a captured graph would replay unchanged; use --cuda-graphs off");
}
