// A small MLP learns a non-linear two-class problem with plain SGD (issue 3): >= 99% training
// accuracy on the CPU.
#include <doctest/doctest.h>

#include "tests/nn/mlp_training.h"

TEST_CASE("an MLP trained with SGD reaches >= 99% training accuracy on the ring problem (CPU)") {
  const double accuracy = tg::test::train_ring_mlp(tg::Device::cpu());
  MESSAGE("training accuracy " << accuracy);
  CHECK(accuracy >= 0.99);
}
