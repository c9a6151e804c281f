// dropout on CUDA: the same generator state drops the same elements as on the CPU, backward
// regenerates the forward mask, and the kept fraction is about 1 - p; drop_path drops the same
// samples as on the CPU, forward and backward.
#include <doctest/doctest.h>

#include <cmath>

#include "ops/dropout.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::random_tensor;

TEST_CASE("dropout: CUDA and CPU draw the identical mask from the same generator state") {
  for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
    for (int64_t n : {1, 7, 4099, 1 << 20}) {
      CAPTURE(n);
      const Tensor x = random_tensor({n}, 900, 1, 2, dtype);
      Generator cpu_gen(4321), cuda_gen(4321);
      cpu_gen.set_offset(13);
      cuda_gen.set_offset(13);
      const Tensor on_cpu = dropout(x, 0.3, true, cpu_gen);
      const Tensor on_cuda = dropout(x.to(Device::cuda(0)), 0.3, true, cuda_gen);
      CHECK(cpu_gen.offset() == cuda_gen.offset());
      CHECK(test::host_values(on_cuda) == test::host_values(on_cpu));
    }
  }
}

TEST_CASE("dropout on CUDA: backward mask equals forward mask; kept fraction within 4 sigma") {
  const double p = 0.25;
  Tensor x = random_tensor({512, 1031}, 910, 1, 2).to(Device::cuda(0));
  x.set_requires_grad(true);
  Generator generator(77);
  const Tensor y = dropout(x, p, true, generator);
  backward(y, ones(y.shape(), DType::f32, Device::cuda(0)));
  const auto yv = y.to_vector<float>(), g = x.grad().to_vector<float>();
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  int64_t kept = 0, mismatches = 0;
  for (size_t i = 0; i < yv.size(); ++i) {
    kept += yv[i] != 0.0f;
    mismatches += g[i] != (yv[i] != 0.0f ? scale : 0.0f);
  }
  CHECK(mismatches == 0);
  const double n = static_cast<double>(yv.size());
  CHECK(std::abs(static_cast<double>(kept) / n - (1 - p)) < 4 * std::sqrt(p * (1 - p) / n));
  CHECK(dropout(x, p, false, generator).same(x));
}

TEST_CASE("drop_path: CUDA and CPU drop the same samples from the same generator state, forward and backward") {
  Tensor x_cpu = random_tensor({97, 17, 8}, 920, 1, 2);
  Tensor x_cuda = x_cpu.to(Device::cuda(0));
  x_cpu.set_requires_grad(true);
  x_cuda.set_requires_grad(true);
  Generator cpu_gen(99), cuda_gen(99);
  const Tensor y_cpu = drop_path(x_cpu, 0.4, true, cpu_gen), y_cuda = drop_path(x_cuda, 0.4, true, cuda_gen);
  CHECK(cpu_gen.offset() == cuda_gen.offset());
  CHECK(test::host_values(y_cuda) == test::host_values(y_cpu));
  backward(y_cpu, ones(y_cpu.shape()));
  backward(y_cuda, ones(y_cuda.shape(), DType::f32, Device::cuda(0)));
  CHECK(test::host_values(x_cuda.grad()) == test::host_values(x_cpu.grad()));
}
