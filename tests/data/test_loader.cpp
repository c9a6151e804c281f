// Augmentation semantics against host references, seeded, resumable shuffling, and the pinned
// order and choices that tests/pytorch/tapegrad_data.py replays.
#include <doctest/doctest.h>

#include <algorithm>

#include "data/augment_pixel.h"
#include "data/loader.h"

using namespace tg;
using namespace tg::data;

namespace {
ImageDataset tiny_dataset() { return make_synthetic(10, 3, 6, 5, 3); }
}  // namespace

TEST_CASE("without augmentation a batch is the normalized images in permutation order") {
  const ImageDataset d = tiny_dataset();
  LoaderConfig config;
  config.batch_size = 4;
  config.seed = 9;
  config.augment.mean = {0.5f, 0.25f, 0.0f};
  config.augment.std = {0.5f, 1.0f, 2.0f};
  DataLoader loader(d, Device::cpu(), config);
  CHECK(loader.batches_per_epoch() == 2);
  const std::vector<int64_t> order = loader.permutation(0);
  const Batch batch = loader.batch(0, 1);
  CHECK(batch.images.shape() == Shape{4, 3, 6, 6});
  const auto images = batch.images.to_vector<float>();
  const auto pixels = d.images.raw_flatten().to_vector<uint8_t>();
  for (int64_t b = 0; b < 4; ++b) {
    const int64_t sample = order[static_cast<size_t>(4 + b)];
    CHECK(batch.labels.to_vector<int64_t>()[static_cast<size_t>(b)] == d.labels.to_vector<int64_t>()[static_cast<size_t>(sample)]);
    for (int64_t i = 0; i < 108; ++i) {
      const int64_t c = i / 36;
      const float expected = (pixels[static_cast<size_t>(sample * 108 + i)] / 255.0f - config.augment.mean[static_cast<size_t>(c)]) /
                             config.augment.std[static_cast<size_t>(c)];
      REQUIRE(images[static_cast<size_t>(b * 108 + i)] == doctest::Approx(expected).epsilon(1e-6));
    }
  }
}

TEST_CASE("crop with padding and flip move pixels as specified") {
  const ImageDataset d = tiny_dataset();
  LoaderConfig config;
  config.batch_size = 10;
  config.shuffle = false;
  config.augment.crop_padding = 2;
  config.augment.horizontal_flip = true;
  DataLoader loader(d, Device::cpu(), config);
  const Batch batch = loader.batch(3, 0);
  const auto out = batch.images.to_vector<float>();
  const auto pixels = d.images.raw_flatten().to_vector<uint8_t>();
  int flipped = 0, shifted = 0;
  for (int64_t b = 0; b < 10; ++b) {
    // Recover the choice by matching against all 5 x 5 offsets and both flips.
    bool found = false;
    for (int64_t dy = 0; dy <= 4 && !found; ++dy)
      for (int64_t dx = 0; dx <= 4 && !found; ++dx)
        for (int flip = 0; flip <= 1 && !found; ++flip) {
          bool match = true;
          for (int64_t c = 0; c < 3 && match; ++c)
            for (int64_t y = 0; y < 6 && match; ++y)
              for (int64_t x = 0; x < 6 && match; ++x) {
                const int64_t xs = flip ? 5 - x : x;
                const int64_t sy = y + dy - 2, sx = xs + dx - 2;
                const float v = (sy < 0 || sy >= 6 || sx < 0 || sx >= 6)
                                    ? 0.0f
                                    : pixels[static_cast<size_t>(((b * 3 + c) * 6 + sy) * 6 + sx)] / 255.0f;
                match = std::abs(out[static_cast<size_t>(((b * 3 + c) * 6 + y) * 6 + x)] - v) < 1e-6f;
              }
          if (match) {
            found = true;
            flipped += flip;
            shifted += (dy != 2 || dx != 2);
          }
        }
    CHECK(found);
  }
  CHECK(flipped > 0);
  CHECK(flipped < 10);
  CHECK(shifted > 0);
}

TEST_CASE("bilinear resize keeps a constant image constant and maps corners") {
  ImageDataset d = make_synthetic(2, 1, 4, 2, 5);
  d.images.fill_(200);
  LoaderConfig config;
  config.batch_size = 2;
  config.augment.output_size = 9;
  DataLoader loader(d, Device::cpu(), config);
  const auto out = loader.batch(0, 0).images.to_vector<float>();
  CHECK(out.size() == 2 * 81);
  for (float v : out) CHECK(v == doctest::Approx(200.0f / 255.0f));
}

TEST_CASE("shuffling is seeded, differs between epochs and resumes exactly") {
  const ImageDataset d = make_synthetic(100, 1, 4, 10, 1);
  LoaderConfig config;
  config.batch_size = 8;
  config.seed = 42;
  config.augment.crop_padding = 1;
  DataLoader a(d, Device::cpu(), config), b(d, Device::cpu(), config);
  std::vector<int64_t> p0 = a.permutation(0), p1 = a.permutation(1);
  CHECK(p0 != p1);
  std::vector<int64_t> sorted = p0;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 100; ++i) CHECK(sorted[static_cast<size_t>(i)] == i);
  // A fresh loader asked for (epoch 1, batch 5) directly gives the same batch as one that walked there.
  for (int64_t i = 0; i < 5; ++i) (void)a.batch(1, i);
  CHECK(a.batch(1, 5).images.to_vector<float>() == b.batch(1, 5).images.to_vector<float>());
  CHECK(a.batches_per_epoch() == 12);
  CHECK_THROWS_AS(a.batch(0, 12), IndexError);
  config.drop_last = false;
  CHECK(DataLoader(d, Device::cpu(), config).batches_per_epoch() == 13);
  config.augment.mean = {0.5f, 0.5f};
  config.augment.std = {1.0f, 1.0f};
  CHECK_THROWS_WITH_AS(DataLoader(d, Device::cpu(), config), "augment: expected 1 per-channel mean and std values, got 2 and 2",
                       ValueError);
}

TEST_CASE("permutation and crop/flip choices of seed 7 (pinned: tests/pytorch/tapegrad_data.py replays them)") {
  // train_timm.py feeds PyTorch tapegrad's batches image for image; its Python replica of the
  // order and of choose() asserts these same values, so a change here must change it too.
  const ImageDataset d = make_synthetic(1000, 1, 4, 10, 1);
  LoaderConfig config;
  config.batch_size = 10;
  config.seed = 7;
  const DataLoader loader(d, Device::cpu(), config);
  const std::vector<int64_t> e0 = loader.permutation(0), e2 = loader.permutation(2);
  CHECK(std::vector<int64_t>(e0.begin(), e0.begin() + 8) == std::vector<int64_t>{898, 906, 799, 987, 681, 240, 139, 880});
  CHECK(std::vector<int64_t>(e2.begin(), e2.begin() + 8) == std::vector<int64_t>{856, 901, 330, 283, 116, 902, 302, 845});
  AugmentParams p{};
  p.crop_padding = 4;
  p.flip = true;
  p.seed = 7;
  p.epoch = 2;
  const ImageChoice c0 = choose(p, 0), c1 = choose(p, 1), c999 = choose(p, 999);
  CHECK((c0.crop_y == 4 && c0.crop_x == 4 && !c0.flip));
  CHECK((c1.crop_y == 6 && c1.crop_x == 5 && c1.flip));
  CHECK((c999.crop_y == 1 && c999.crop_x == 4 && c999.flip));
}
