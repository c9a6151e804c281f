// Philox streams are identical on CPU and GPU for the same (seed, offset).
#include <doctest/doctest.h>

#include "core/tensor.h"
#include "tests/support/test_support.h"

using namespace tg;

TEST_CASE("uniform fills are bit-identical on CPU and GPU") {
  Generator cpu_gen(1234), gpu_gen(1234);
  for (int64_t n : {1, 3, 4, 1000, 100003}) {
    const auto host = rand({n}, DType::f32, Device::cpu(), cpu_gen, -2, 5).to_vector<float>();
    const auto device = rand({n}, DType::f32, Device::cuda(0), gpu_gen, -2, 5).to_vector<float>();
    CHECK(host == device);
    CHECK(cpu_gen.offset() == gpu_gen.offset());
  }
  const auto host64 = rand({999}, DType::f64, Device::cpu(), cpu_gen).to_vector<double>();
  const auto device64 = rand({999}, DType::f64, Device::cuda(0), gpu_gen).to_vector<double>();
  CHECK(host64 == device64);
}

TEST_CASE("normal fills agree on CPU and GPU up to the last bits of logf/sinf/cosf") {
  Generator cpu_gen(99), gpu_gen(99);
  const auto host = randn({65537}, DType::f32, Device::cpu(), cpu_gen).to_vector<float>();
  const auto device = randn({65537}, DType::f32, Device::cuda(0), gpu_gen).to_vector<float>();
  CHECK(tg::test::relative_error(device, host) < 1e-6);
  size_t identical = 0;
  for (size_t i = 0; i < host.size(); ++i) identical += host[i] == device[i];
  CHECK(identical > host.size() / 2);
}
