// The regularisers on CUDA against the CPU: mixup and cutmix images, the mixed loss and its
// gradient, and the EMA update.
#include <doctest/doctest.h>

#include "nn/ema.h"
#include "nn/layers.h"
#include "nn/mixup.h"
#include "tests/support/op_checks.h"

using namespace tg;

TEST_CASE("Mixup on CUDA: the mixed images, the loss and its gradient equal the CPU's") {
  const Tensor images = test::random_tensor({9, 3, 8, 8}, 70), logits = test::random_tensor({9, 5}, 71);
  const Tensor labels = from_vector(std::vector<int64_t>{0, 1, 2, 3, 4, 0, 1, 2, 3}, {9});
  nn::MixupConfig config;
  config.mixup_alpha = 0.8;
  config.cutmix_alpha = 1.0;
  nn::Mixup on_cpu(config, 3), on_cuda(config, 3);
  int cutmix = 0;
  for (uint64_t step = 0; step < 6; ++step) {
    CAPTURE(step);
    const nn::MixChoice choice = on_cpu.choose(step, 8, 8);
    cutmix += choice.cutmix;
    CHECK(test::host_values(on_cuda.mix_images(images.to(Device::cuda(0)), choice)) ==
          test::host_values(on_cpu.mix_images(images, choice)));
    Tensor x_cpu = logits.clone(), x_cuda = logits.to(Device::cuda(0));
    x_cpu.set_requires_grad(true);
    x_cuda.set_requires_grad(true);
    const Tensor l_cpu = on_cpu.loss(x_cpu, labels, choice, 0.1);
    const Tensor l_cuda = on_cuda.loss(x_cuda, labels.to(Device::cuda(0)), choice, 0.1);
    CHECK(l_cuda.item() == doctest::Approx(l_cpu.item()).epsilon(1e-6));
    backward(l_cpu);
    backward(l_cuda);
    CHECK(test::relative_error(test::host_values(x_cuda.grad()), test::host_values(x_cpu.grad())) < 1e-6);
  }
  CHECK(cutmix > 0);
  CHECK(cutmix < 6);
}

TEST_CASE("ModelEma on CUDA equals the CPU update") {
  std::vector<double> results[2];
  int i = 0;
  for (Device device : {Device::cpu(), Device::cuda(0)}) {
    Generator g(8);
    nn::Linear model(16, 8, true, device, g), average(16, 8, true, device, g);
    nn::ModelEma ema(average, model, 0.99);
    for (uint64_t step = 0; step < 3; ++step) {
      model.weight.copy_(test::random_tensor({8, 16}, 80 + step));
      ema.update();
    }
    results[i++] = test::host_values(average.weight);
  }
  CHECK(test::relative_error(results[1], results[0]) < 1e-6);
}
