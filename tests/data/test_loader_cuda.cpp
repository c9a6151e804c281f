// GPU batches equal CPU batches (same permutation, crops, flips, resize, normalization); with
// TrivialAugment both are assembled on the host, so they are equal bit for bit.
#include <doctest/doctest.h>

#include "data/loader.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::data;

TEST_CASE("CUDA augmentation matches the CPU path") {
  const ImageDataset d = make_synthetic(300, 3, 32, 10, 2);
  for (int64_t output_size : {int64_t{0}, int64_t{56}}) {
    LoaderConfig config;
    config.batch_size = 64;
    config.seed = 5;
    config.augment = {4, true, output_size, {0.49f, 0.48f, 0.45f}, {0.25f, 0.24f, 0.26f}};
    DataLoader cpu(d, Device::cpu(), config), gpu(d, Device::cuda(0), config);
    for (int64_t epoch : {0, 3}) {
      test::PoisonGuard poison(Device::cuda(0));
      const Batch a = cpu.batch(epoch, 2), b = gpu.batch(epoch, 2);
      CHECK(b.labels.to_vector<int64_t>() == a.labels.to_vector<int64_t>());
      CHECK(test::relative_error(b.images.to_vector<float>(), a.images.to_vector<float>()) < 1e-6);
    }
  }
}

TEST_CASE("CUDA loader with TrivialAugment: batches assembled on the host, copied to the GPU, equal to the CPU's") {
  const ImageDataset d = make_synthetic(300, 3, 32, 10, 2);
  LoaderConfig config;
  config.batch_size = 64;
  config.seed = 6;
  config.augment = {4, true, 0, {0.49f, 0.48f, 0.45f}, {0.25f, 0.24f, 0.26f}, true};
  DataLoader cpu(d, Device::cpu(), config), gpu(d, Device::cuda(0), config);
  for (int64_t epoch : {0, 2}) {
    const Batch a = cpu.batch(epoch, 1), b = gpu.batch(epoch, 1);
    CHECK(b.images.device() == Device::cuda(0));
    CHECK(b.labels.device() == Device::cuda(0));
    CHECK(b.labels.to_vector<int64_t>() == a.labels.to_vector<int64_t>());
    CHECK(b.images.to_vector<float>() == a.images.to_vector<float>());
  }
}
