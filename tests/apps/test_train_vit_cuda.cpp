// train_vit on the GPU: a resumed run continues bit for bit (issue 5: exact resume on GPU too).
#include <doctest/doctest.h>

#include <cstring>

#include "tests/apps/train_vit_fixture.h"

using namespace tg;

TEST_CASE("CUDA: N steps straight equal N/2 steps, save, resume and N/2 steps, bit for bit") {
  std::vector<std::string> args = test::tiny_run_args();
  args[1] = "cuda";  // "--device", "cpu" leads the tiny run's flags
  // The GPU machine has no Fashion-MNIST package: the synthetic set needs no files.
  test::check_bitwise_resume(test::with(args, {"--dataset", "synthetic"}));
}
