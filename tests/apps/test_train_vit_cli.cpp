// The built train_vit executable end to end on the CPU: a short Fashion-MNIST run reaches a
// stated test accuracy with exact and with WTA-CRS gradients; bad input exits non-zero with
// its message. Needs the dataset in /usr/share/datasets/fashion-mnist (scripts/setup.sh).
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "core/error.h"
#include "ops/matmul/strategy.h"
#include "tests/apps/train_vit_fixture.h"

#ifndef TRAIN_VIT_EXE
#error "TRAIN_VIT_EXE (the path of the built train_vit) must be defined"
#endif

using namespace tg;

namespace {

const char* const kFashionMnist = "/usr/share/datasets/fashion-mnist";

test::ProcessResult run_train_vit(const std::string& args, const test::ScratchDir& dir) {
  return test::run_executable(TRAIN_VIT_EXE, args, dir);
}

// The final test accuracy of a run's summary line.
double final_accuracy(const std::string& out) {
  std::smatch match;
  REQUIRE(std::regex_search(out, match, std::regex(R"(final test acc ([0-9.]+)%)")));
  return std::stod(match[1]);
}

// 93 steps of 64 images, a two-block ViT-Tiny at 28 px with 7-px patches, tested on 2000
// images: about 32 s on one core of the 2-core development machine, which measured 69.3% test
// accuracy with exact gradients and 69.15% with WTA-CRS at ratio 0.5 (chance: 10%). The
// thresholds leave about 6 points for other CPUs' rounding and future changes.
const std::string kShortRun =
    std::string("--device cpu --data-dir ") + kFashionMnist +
    " --model vit-tiny --depth 2 --img 28 --patch 7 --train-subset 6000 --test-subset 2000 --batch-size 64"
    " --epochs 1 --warmup-epochs 0.2 --log-every 20";

}  // namespace

TEST_CASE("train_vit trains on a Fashion-MNIST subset with exact gradients") {
  test::ScratchDir dir("train_vit_cli_exact");
  const test::ProcessResult r = run_train_vit(kShortRun + " --backward exact", dir);
  INFO(r.out, r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(final_accuracy(r.out) >= 63.0);
}

TEST_CASE("train_vit trains on a Fashion-MNIST subset with WTA-CRS gradients at ratio 0.5") {
  test::ScratchDir dir("train_vit_cli_wta");
  const test::ProcessResult r = run_train_vit(kShortRun + " --backward wta-crs --ratio 0.5", dir);
  INFO(r.out, r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(final_accuracy(r.out) >= 62.0);
}

TEST_CASE("train_vit exits with 1 and names the file for a truncated dataset") {
  test::ScratchDir dir("train_vit_cli_corrupt");
  const std::filesystem::path data = dir.path() / "fashion";
  std::filesystem::create_directories(data);
  for (const char* name : {"train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
    std::filesystem::copy_file(std::filesystem::path(kFashionMnist) / name, data / name);
  // The first half of the training images: a gzip stream that ends early.
  const std::string images = test::read_text(std::string(kFashionMnist) + "/train-images-idx3-ubyte.gz");
  const std::string truncated = (data / "train-images-idx3-ubyte.gz").string();
  std::ofstream(truncated, std::ios::binary) << images.substr(0, images.size() / 2);

  const test::ProcessResult r = run_train_vit("--device cpu --data-dir '" + data.string() + "'", dir);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("train_vit: error: cannot read '" + truncated + "': ") == 0);
  CHECK(r.err.find("(corrupt or truncated gzip data?)") != std::string::npos);
  CHECK(r.out.find("epoch 1/") == std::string::npos);  // failed before any training
}

TEST_CASE("train_vit exits with 1 for a missing dataset and with 2 for a usage error, before any work") {
  test::ScratchDir dir("train_vit_cli_usage");
  test::ProcessResult r = run_train_vit("--device cpu --data-dir '" + (dir / "empty") + "'", dir);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("train_vit: error: Fashion-MNIST not found: '" + (dir / "empty") +
                   "' has no train-images-idx3-ubyte (nor train-images-idx3-ubyte.gz).") == 0);

  r = run_train_vit("--backward wta-crs --ratio 1.5", dir);
  CHECK(r.exit_code == 2);
  CHECK(r.err == "train_vit: error: --ratio must be in (0, 1], got 1.5\n");
  CHECK(r.out.empty());

  r = run_train_vit("--patch 5 --img 32", dir);
  CHECK(r.exit_code == 2);
  CHECK(r.err == "train_vit: error: --patch 5 does not divide --img 32 (the image must split into whole patches)\n");

  r = run_train_vit("--help", dir);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("--wta-targets") != std::string::npos);
}
