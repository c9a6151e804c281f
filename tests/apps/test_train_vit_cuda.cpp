// train_vit on the GPU: a resumed run continues bit for bit (issue 5: exact resume on GPU too).
#include <doctest/doctest.h>

#include <cstring>

#include "tests/apps/train_vit_fixture.h"

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
