// train_vit data parallel on two GPUs over NCCL (the exactness criterion): 2 GPUs x batch
// 32 give the losses of 1 GPU x batch 64 over 50 steps, within the reduction tolerance below, and
// rank 0's checkpoint records the world size. Needs two GPUs: with one, the test says so and is
// not run (as tests/dist/test_nccl_communicator_cuda.cpp does); without any, the executable is
// skipped.
#include <doctest/doctest.h>

#include <cmath>

#include "core/device.h"
#include "tests/apps/train_vit_dist_fixture.h"

using namespace tg;

namespace {

// A one-block ViT-Tiny on 3200 synthetic images (the GPU machine has no Fashion-MNIST): 50 steps
// of 64 images in fp32 (no TF32) without CUDA graphs, so that both runs take the same path.
std::vector<std::string> run_args(int batch) {
  std::vector<std::string> args = test::tiny_run_args();
  args[1] = "cuda";  // "--device", "cpu" leads the tiny run's flags
  test::set_flag(args, "--train-subset", "3200");
  test::set_flag(args, "--batch-size", std::to_string(batch));
  test::set_flag(args, "--epochs", "1");
  test::set_flag(args, "--warmup-epochs", "0.2");
  return test::with(args, {"--dataset", "synthetic", "--precision", "fp32", "--cuda-graphs", "off", "--max-steps", "50"});
}

}  // namespace

// Tolerance (not yet measured on the GPU machine; to be confirmed there): the ranks' gradients
// are the one-GPU gradient summed in another order — cuBLAS sums each rank's half of the batch,
// NCCL averages the halves — so each f32 element moves by a few ulps (~1e-7 relative) per step,
// and Adam carries that into the weights. On the CPU the same comparison stays within 2.4e-7
// over 10 steps (tests/apps/test_train_vit_dist.cpp); 50 steps and GEMMs that may pick other
// split-K plans for half the rows get 1e-4 relative, still two orders below the ~1e-2 that a
// wrong average or a wrong shard makes.
TEST_CASE("CUDA: 2 GPUs x batch 32 give the losses of 1 GPU x batch 64 over 50 steps") {
  if (cuda_device_count() < 2) {
    MESSAGE("fewer than 2 GPUs: the data-parallel test is not run");
    return;
  }
  test::ScratchDir dir("train_vit_dist_cuda");
  const test::ProcessResult one = test::run_executable(
      test::train_vit_exe(), test::shell_args(test::with(run_args(64), {"--metrics-out", dir / "one.jsonl"})), dir);
  INFO(one.err);
  REQUIRE(one.exit_code == 0);
  const test::ProcessResult two = test::launch_train_vit(
      2, 29631, test::with(run_args(32), {"--metrics-out", dir / "two.jsonl", "--save", dir / "ckpt"}), dir);
  INFO(two.out, two.err);
  REQUIRE(two.exit_code == 0);
  const std::vector<double> a = test::train_losses(dir / "one.jsonl"), b = test::train_losses(dir / "two.jsonl");
  REQUIRE(a.size() == 50);
  REQUIRE(b.size() == 50);
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(std::abs(a[i] - b[i]) <= 1e-4 * std::abs(a[i]));
  }
  CHECK(two.out.find("  device            cuda:0\n") != std::string::npos);  // rank 0's (cuda:LOCAL_RANK)
  const nn::SafetensorsFile state = nn::load_safetensors(train::checkpoint_files(dir / "ckpt").train_state);
  CHECK(nlohmann::json::parse(state.metadata.at("config"))["world_size"] == 2);
}
