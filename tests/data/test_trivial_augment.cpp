// TrivialAugment: the magnitude table (torchvision's TrivialAugmentWide space of 31 bins), the
// uniform seeded choices, each operation against a reference written from its definition (pixel
// moves, hand-computed colour arithmetic, a hand-computed equalization), and the loader running
// it before crop/flip/normalize, differently per epoch.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "data/loader.h"
#include "data/trivial_augment.h"

using namespace tg;
using namespace tg::data;

namespace {

using Image = std::vector<uint8_t>;

Image pattern(int64_t channels, int64_t h, int64_t w) {  // distinct nonzero values
  Image image(static_cast<size_t>(channels * h * w));
  for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<uint8_t>(1 + (i * 37) % 250);
  return image;
}

Image applied(TaOp op, double magnitude, Image image, int64_t channels, int64_t h, int64_t w) {
  apply_ta_op(op, magnitude, image.data(), channels, h, w);
  return image;
}

// out(x, y) = in(source(x, y)) or 0 outside, for a geometric operation on one channel.
template <class Source>
int64_t geometric_mismatches(TaOp op, double magnitude, int64_t h, int64_t w, Source&& source) {
  const Image in = pattern(1, h, w), out = applied(op, magnitude, in, 1, h, w);
  int64_t bad = 0;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const auto [sx, sy] = source(x, y);
      const uint8_t expected = sx >= 0 && sx < w && sy >= 0 && sy < h ? in[static_cast<size_t>(sy * w + sx)] : 0;
      bad += out[static_cast<size_t>(y * w + x)] != expected;
    }
  return bad;
}

int64_t nearest(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

}  // namespace

TEST_CASE("TrivialAugmentWide's magnitudes: 31 bins per operation") {
  CHECK(ta_magnitude(TaOp::shear_x, 30) == doctest::Approx(0.99));
  CHECK(ta_magnitude(TaOp::brightness, 15) == doctest::Approx(0.495));
  CHECK(ta_magnitude(TaOp::translate_y, 15) == doctest::Approx(16));
  CHECK(ta_magnitude(TaOp::rotate, 20) == doctest::Approx(90));
  CHECK(ta_magnitude(TaOp::posterize, 0) == 8);
  CHECK(ta_magnitude(TaOp::posterize, 12) == 6);
  CHECK(ta_magnitude(TaOp::posterize, 13) == 5);
  CHECK(ta_magnitude(TaOp::posterize, 30) == 2);
  CHECK(ta_magnitude(TaOp::solarize, 0) == 255);
  CHECK(ta_magnitude(TaOp::solarize, 30) == 0);
  CHECK(ta_magnitude(TaOp::equalize, 7) == 0);
  CHECK(ta_signed(TaOp::sharpness));
  CHECK(!ta_signed(TaOp::solarize));
  CHECK_THROWS_WITH_AS(ta_magnitude(TaOp::rotate, 31), "TrivialAugment: magnitude bin 31 is outside [0, 31)", IndexError);
}

TEST_CASE("TrivialAugment's choices are uniform over the 14 operations, seeded per (seed, sample, epoch)") {
  constexpr int kSamples = 14000;
  std::vector<int> counts(kTaOps);
  int negative = 0, signed_nonzero = 0;
  for (uint64_t key = 0; key < kSamples; ++key) {
    const TaChoice c = choose_trivial_augment(5, key, 2);
    ++counts[static_cast<size_t>(c.op)];
    if (ta_signed(c.op) && c.magnitude != 0) {  // bin 0 has magnitude 0 whatever the sign
      ++signed_nonzero;
      negative += c.magnitude < 0;
    }
    const TaChoice again = choose_trivial_augment(5, key, 2);
    REQUIRE((again.op == c.op && again.magnitude == c.magnitude));
  }
  const double p = 1.0 / kTaOps, sigma = std::sqrt(p * (1 - p) / kSamples);
  for (int count : counts) CHECK(std::abs(count / double(kSamples) - p) < 4 * sigma);
  CHECK(std::abs(negative / double(signed_nonzero) - 0.5) < 4 * std::sqrt(0.25 / signed_nonzero));
  int same_next_epoch = 0;
  for (uint64_t key = 0; key < 100; ++key) same_next_epoch += choose_trivial_augment(5, key, 3).op == choose_trivial_augment(5, key, 2).op;
  CHECK(same_next_epoch < 30);  // about 100 / 14 by chance
}

TEST_CASE("TrivialAugment's geometric operations move pixels as torchvision's affine maps do") {
  CHECK(geometric_mismatches(TaOp::identity, 0, 5, 6, [](int64_t x, int64_t y) { return std::pair{x, y}; }) == 0);
  CHECK(geometric_mismatches(TaOp::translate_x, 3.9, 5, 6, [](int64_t x, int64_t y) { return std::pair{x - 3, y}; }) == 0);
  CHECK(geometric_mismatches(TaOp::translate_y, -2.5, 5, 6, [](int64_t x, int64_t y) { return std::pair{x, y + 2}; }) == 0);
  // Shears about the corner (0, 0): a row y moves by m * (y + 0.5).
  CHECK(geometric_mismatches(TaOp::shear_x, 0.3, 7, 8, [](int64_t x, int64_t y) {
          return std::pair{nearest(x + 0.3 * (y + 0.5)), y};
        }) == 0);
  CHECK(geometric_mismatches(TaOp::shear_y, -0.45, 7, 8, [](int64_t x, int64_t y) {
          return std::pair{x, nearest(y - 0.45 * (x + 0.5))};
        }) == 0);
  // 90 degrees counter-clockwise: the right column becomes the top row.
  CHECK(geometric_mismatches(TaOp::rotate, 90, 6, 6, [](int64_t x, int64_t y) { return std::pair{5 - y, x}; }) == 0);
  CHECK(geometric_mismatches(TaOp::rotate, -90, 6, 6, [](int64_t x, int64_t y) { return std::pair{y, 5 - x}; }) == 0);
}

TEST_CASE("TrivialAugment's colour operations: torchvision's blends, clamped and truncated to uint8") {
  // One RGB pixel (200, 100, 50): grayscale trunc(0.2989 * 200 + 0.587 * 100 + 0.114 * 50) = 124.
  CHECK(applied(TaOp::color, -0.5, {200, 100, 50}, 3, 1, 1) == Image{162, 112, 87});
  CHECK(applied(TaOp::color, 0.5, {200, 100, 50}, 3, 1, 1) == Image{238, 88, 13});  // 1.5 v - 0.5 * 124
  CHECK(applied(TaOp::color, 0.9, {7, 8, 9}, 1, 1, 3) == Image{7, 8, 9});            // one channel: no colour
  CHECK(applied(TaOp::brightness, 0.5, {0, 101, 170, 171}, 1, 2, 2) == Image{0, 151, 255, 255});
  CHECK(applied(TaOp::brightness, -0.75, {0, 101, 170, 255}, 1, 2, 2) == Image{0, 25, 42, 63});
  // Contrast 2 around the mean 100 of the grayscale image: 2 v - 100.
  CHECK(applied(TaOp::contrast, 1.0, {20, 80, 120, 180}, 1, 2, 2) == Image{0, 60, 140, 255});
  CHECK(applied(TaOp::posterize, 3, {255, 0x9F, 0x20, 0x1F}, 1, 2, 2) == Image{0xE0, 0x80, 0x20, 0x00});
  CHECK_THROWS_WITH_AS(applied(TaOp::posterize, 9, {1}, 1, 1, 1), "TrivialAugment: posterize keeps 0 to 8 bits, got 9",
                       ValueError);
  CHECK(applied(TaOp::solarize, 128, {127, 128, 200, 0}, 1, 2, 2) == Image{127, 127, 55, 0});
  // Per channel: [50, 150] stretches to [0, 255]; a constant channel stays.
  // (v - 50) * 2.55 in float32: 100 * 2.55f rounds to 255 (in double it would truncate to 254).
  CHECK(applied(TaOp::auto_contrast, 0, {50, 100, 150, 9, 9, 9, 0, 255, 0}, 3, 1, 3) ==
        Image{0, 127, 255, 9, 9, 9, 0, 255, 0});
  // Sharpness blends with [[1,1,1],[1,5,1],[1,1,1]] / 13 (rounded) inside; the border is kept.
  const Image flat_with_peak = {10, 10, 10, 10, 10, 62, 10, 10, 10, 10, 10, 10};  // 3 x 4, peak at (1, 1)
  const Image sharpened = applied(TaOp::sharpness, 1.0, flat_with_peak, 1, 3, 4);  // factor 2
  // Blurred (1, 1) = round((8 * 10 + 5 * 62) / 13) = 30, (1, 2) = round((7 * 10 + 62 + 5 * 10) / 13) = 14.
  CHECK(sharpened == Image{10, 10, 10, 10, 10, 94, 6, 10, 10, 10, 10, 10});
}

TEST_CASE("TrivialAugment's equalize: PIL's histogram equalization per channel") {
  // 1024 pixels: 256 of 0, 256 of 100, 512 of 200. step = (1024 - 512) / 255 = 2; value v maps
  // to (count below v + 1) / 2: 0 -> 0, 100 -> 128, 200 -> 256 clamped to 255.
  Image image(1024, 200);
  std::fill(image.begin(), image.begin() + 256, 0);
  std::fill(image.begin() + 256, image.begin() + 512, 100);
  const Image out = applied(TaOp::equalize, 0, image, 1, 32, 32);
  CHECK(out[0] == 0);
  CHECK(out[300] == 128);
  CHECK(out[1000] == 255);
  // Fewer than 255 pixels below the top value: step 0 leaves the channel alone.
  CHECK(applied(TaOp::equalize, 0, {3, 90, 90, 200}, 1, 2, 2) == Image{3, 90, 90, 200});
  CHECK_THROWS_WITH_AS(applied(TaOp::equalize, 0, Image(8), 2, 2, 2),
                       "TrivialAugment: expected an image of 1 or 3 channels and positive size, got 2x2x2", ValueError);
}

TEST_CASE("the loader applies TrivialAugment to each image before normalizing, with new choices each epoch") {
  const ImageDataset d = make_synthetic(12, 3, 8, 4, 3);
  LoaderConfig config;
  config.batch_size = 6;
  config.seed = 17;
  config.augment.trivial_augment = true;
  DataLoader loader(d, Device::cpu(), config);
  const auto pixels = d.images.raw_flatten().to_vector<uint8_t>();
  int64_t changed = 0;
  for (int64_t epoch : {0, 1}) {
    const std::vector<int64_t> order = loader.permutation(epoch);
    const auto images = loader.batch(epoch, 1).images.to_vector<float>();
    for (int64_t b = 0; b < 6; ++b) {
      const int64_t sample = order[static_cast<size_t>(6 + b)];
      Image expected(pixels.begin() + sample * 192, pixels.begin() + (sample + 1) * 192);
      const TaChoice c = choose_trivial_augment(17, static_cast<uint64_t>(sample), static_cast<uint64_t>(epoch));
      changed += c.op != TaOp::identity;
      expected = applied(c.op, c.magnitude, expected, 3, 8, 8);
      for (size_t i = 0; i < 192; ++i) REQUIRE(images[static_cast<size_t>(b) * 192 + i] == expected[i] * (1.0f / 255.0f));
    }
  }
  CHECK(changed > 0);
  const ImageDataset two_channels = make_synthetic(12, 2, 8, 4, 3);
  CHECK_THROWS_WITH_AS(DataLoader(two_channels, Device::cpu(), config),
                       "augment: TrivialAugment needs images of 1 or 3 channels, got 2", ValueError);
}
