// A ViT forward+backward on the GPU gives the CPU's loss and gradients (fp32, TF32 off).
#include <doctest/doctest.h>

#include "tests/apps/vit_fixture.h"

using namespace tg;

TEST_CASE("ViT-tiny on CUDA matches the CPU: loss within 1e-5 relative, every gradient within 1e-4") {
  const vit::VitConfig c = test::small_vit_config();
  const test::VitRun cpu = test::run_vit(c, Device::cpu());
  const test::VitRun gpu = test::run_vit(c, Device::cuda(0));
  CHECK(std::abs(gpu.loss - cpu.loss) / std::abs(cpu.loss) < 1e-5);
  for (size_t i = 0; i < cpu.grads.size(); ++i) {
    CAPTURE(cpu.grads[i].first);
    CHECK(test::relative_error(gpu.grads[i].second, cpu.grads[i].second) < 1e-4);
  }
}
