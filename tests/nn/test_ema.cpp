// ModelEma against the recursion ema = decay * ema + (1 - decay) * w computed in f64 on the host,
// the average left as the caller set it, and the errors for modules of different structure.
#include <doctest/doctest.h>

#include "nn/ema.h"
#include "nn/layers.h"
#include "tests/support/op_checks.h"

using namespace tg;

TEST_CASE("ModelEma follows ema = decay * ema + (1 - decay) * w after every update") {
  Generator g(3);
  nn::Linear model(4, 3, true, Device::cpu(), g), average(4, 3, true, Device::cpu(), g);
  nn::ModelEma ema(average, model, 0.9);
  // The constructor leaves the average's values alone.
  std::vector<double> expected = test::host_values(average.weight);
  CHECK(ema.decay() == 0.9);
  for (int step = 0; step < 3; ++step) {
    model.weight.copy_(test::random_tensor({3, 4}, 100 + static_cast<uint64_t>(step)));  // an optimizer step
    const std::vector<double> w = test::host_values(model.weight);
    for (size_t i = 0; i < expected.size(); ++i) expected[i] = 0.9 * expected[i] + 0.1 * w[i];
    ema.update();
  }
  const std::vector<double> got = test::host_values(average.weight);
  for (size_t i = 0; i < expected.size(); ++i) CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-6));
  // The bias never changed from zero: its average stays zero.
  CHECK(test::host_values(average.bias) == std::vector<double>(3, 0.0));
}

TEST_CASE("ModelEma errors") {
  Generator g(4);
  nn::Linear model(4, 3, true, Device::cpu(), g), wider(4, 5, true, Device::cpu(), g), no_bias(4, 3, false, Device::cpu(), g);
  CHECK_THROWS_WITH_AS(nn::ModelEma(wider, model, 1.0), "ModelEma: expected a decay in [0, 1), got 1", ValueError);
  CHECK_THROWS_WITH_AS(nn::ModelEma(wider, model, 0.5),
                       "ModelEma: key 'bias' is f32 [5] in the average but f32 [3] in the model", ShapeError);
  CHECK_THROWS_WITH_AS(nn::ModelEma(no_bias, model, 0.5), "ModelEma: the average has no key 'bias' (shape [3]) of the model",
                       ValueError);
  CHECK_THROWS_WITH_AS(nn::ModelEma(model, no_bias, 0.5),
                       "ModelEma: the average has 2 tensors, the model 1 (expected modules of one structure)", ValueError);
}
