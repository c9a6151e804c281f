// The same MLP training on the GPU (issue 3): >= 99% training accuracy.
#include <doctest/doctest.h>

#include "tests/nn/mlp_training.h"

TEST_CASE("an MLP trained with SGD reaches >= 99% training accuracy on the ring problem (CUDA)") {
  const double accuracy = tg::test::train_ring_mlp(tg::Device::cuda(0));
  MESSAGE("training accuracy " << accuracy);
  CHECK(accuracy >= 0.99);
}
