// TrivialAugment's operations on one u8 image [C, H, W], torchvision's tensor semantics.
#include "data/trivial_augment.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "core/rng.h"

namespace tg::data {

namespace {

constexpr double kPi = 3.14159265358979323846;

// torchvision computes in float32 on uint8 images, then clamps and truncates.
uint8_t to_u8(float v) { return static_cast<uint8_t>(std::clamp(v, 0.0f, 255.0f)); }

// Resamples every channel through the inverse affine map m (output point relative to the
// centre -> source point relative to the centre), nearest pixel, zero outside.
void affine(uint8_t* image, int64_t channels, int64_t h, int64_t w, const std::array<double, 6>& m) {
  const std::vector<uint8_t> source(image, image + channels * h * w);
  const double half_w = static_cast<double>(w) / 2, half_h = static_cast<double>(h) / 2;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const double px = static_cast<double>(x) + 0.5 - half_w, py = static_cast<double>(y) + 0.5 - half_h;
      const double sx = std::nearbyint(m[0] * px + m[1] * py + m[2] + half_w - 0.5);
      const double sy = std::nearbyint(m[3] * px + m[4] * py + m[5] + half_h - 0.5);
      const bool inside = sx >= 0 && sx < static_cast<double>(w) && sy >= 0 && sy < static_cast<double>(h);
      const int64_t from = inside ? static_cast<int64_t>(sy) * w + static_cast<int64_t>(sx) : 0;
      for (int64_t c = 0; c < channels; ++c) image[(c * h + y) * w + x] = inside ? source[c * h * w + from] : 0;
    }
}

// The grayscale image (one plane) of an RGB image, or the image itself with one channel.
std::vector<uint8_t> grayscale(const uint8_t* image, int64_t channels, int64_t plane) {
  if (channels != 3) return std::vector<uint8_t>(image, image + plane);
  std::vector<uint8_t> gray(static_cast<size_t>(plane));
  for (int64_t i = 0; i < plane; ++i)
    gray[i] = static_cast<uint8_t>(0.2989f * image[i] + 0.587f * image[plane + i] + 0.114f * image[2 * plane + i]);
  return gray;
}

// image = factor * image + (1 - factor) * other(c, i), clamped and truncated.
template <class Other>
void blend(uint8_t* image, int64_t channels, int64_t plane, float factor, Other&& other) {
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t i = 0; i < plane; ++i) {
      uint8_t& v = image[c * plane + i];
      v = to_u8(factor * v + (1 - factor) * other(c, i));
    }
}

void sharpness(uint8_t* image, int64_t channels, int64_t h, int64_t w, float factor) {
  if (h <= 2 || w <= 2) return;
  const int64_t plane = h * w;
  // The blurred image: [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 rounded inside, the border as is.
  std::vector<float> blurred(image, image + channels * plane);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t y = 1; y + 1 < h; ++y)
      for (int64_t x = 1; x + 1 < w; ++x) {
        float sum = 4.0f * image[(c * h + y) * w + x];
        for (int64_t dy = -1; dy <= 1; ++dy)
          for (int64_t dx = -1; dx <= 1; ++dx) sum += image[(c * h + y + dy) * w + x + dx];
        blurred[(c * h + y) * w + x] = std::nearbyint(sum / 13.0f);
      }
  blend(image, channels, plane, factor, [&](int64_t c, int64_t i) { return blurred[c * plane + i]; });
}

void auto_contrast(uint8_t* image, int64_t channels, int64_t plane) {
  for (int64_t c = 0; c < channels; ++c) {
    uint8_t* p = image + c * plane;
    const auto [lo, hi] = std::minmax_element(p, p + plane);
    if (*lo == *hi) continue;
    const float low = *lo, scale = 255.0f / (static_cast<float>(*hi) - low);
    for (int64_t i = 0; i < plane; ++i) p[i] = to_u8((p[i] - low) * scale);
  }
}

// Per channel: torchvision's _scale_channel (PIL's ImageOps.equalize).
void equalize(uint8_t* image, int64_t channels, int64_t plane) {
  for (int64_t c = 0; c < channels; ++c) {
    uint8_t* p = image + c * plane;
    std::array<int64_t, 256> hist{};
    for (int64_t i = 0; i < plane; ++i) ++hist[p[i]];
    int64_t last = 255;
    while (hist[static_cast<size_t>(last)] == 0) --last;  // plane > 0: some value is present
    const int64_t step = (plane - hist[static_cast<size_t>(last)]) / 255;
    if (step == 0) continue;
    std::array<uint8_t, 256> lut{};
    int64_t cumulative = 0;
    for (size_t v = 0; v < 256; ++v) {  // lut[v] from the counts of the values below v
      lut[v] = static_cast<uint8_t>(std::min<int64_t>((cumulative + step / 2) / step, 255));
      cumulative += hist[v];
    }
    for (int64_t i = 0; i < plane; ++i) p[i] = lut[p[i]];
  }
}

}  // namespace

double ta_magnitude(TaOp op, int bin) {
  TG_CHECK(bin >= 0 && bin < kTaBins, IndexError, "TrivialAugment: magnitude bin ", bin, " is outside [0, ", kTaBins,
           ")");
  const double t = static_cast<double>(bin) / (kTaBins - 1);
  switch (op) {
    case TaOp::shear_x: case TaOp::shear_y: case TaOp::brightness: case TaOp::color: case TaOp::contrast:
    case TaOp::sharpness: return 0.99 * t;
    case TaOp::translate_x: case TaOp::translate_y: return 32.0 * t;
    case TaOp::rotate: return 135.0 * t;
    case TaOp::posterize: return 8 - std::round(bin / 5.0);
    case TaOp::solarize: return 255.0 * (1 - t);
    default: return 0;
  }
}

bool ta_signed(TaOp op) { return op >= TaOp::shear_x && op <= TaOp::sharpness; }

TaChoice choose_trivial_augment(uint64_t seed, uint64_t key, uint64_t epoch) {
  const philox::Block r = philox::generate(stream_seed(seed, kTrivialAugmentStream), key, epoch);
  TaChoice choice;
  choice.op = static_cast<TaOp>(r.w[0] % kTaOps);
  choice.magnitude = ta_magnitude(choice.op, static_cast<int>(r.w[1] % kTaBins));
  if (ta_signed(choice.op) && (r.w[2] & 1u)) choice.magnitude = -choice.magnitude;
  return choice;
}

void apply_ta_op(TaOp op, double m, uint8_t* image, int64_t channels, int64_t h, int64_t w) {
  TG_CHECK((channels == 1 || channels == 3) && h > 0 && w > 0, ValueError,
           "TrivialAugment: expected an image of 1 or 3 channels and positive size, got ", channels, "x", h, "x", w);
  const int64_t plane = h * w;
  const double hw = static_cast<double>(w) / 2, hh = static_cast<double>(h) / 2;
  const auto factor = static_cast<float>(1 + m);  // of the colour operations
  switch (op) {
    case TaOp::identity: return;
    case TaOp::shear_x: return affine(image, channels, h, w, {1, m, m * hh, 0, 1, 0});  // about the corner (0, 0)
    case TaOp::shear_y: return affine(image, channels, h, w, {1, 0, 0, m, 1, m * hw});
    case TaOp::translate_x: return affine(image, channels, h, w, {1, 0, -std::trunc(m), 0, 1, 0});
    case TaOp::translate_y: return affine(image, channels, h, w, {1, 0, 0, 0, 1, -std::trunc(m)});
    case TaOp::rotate: {
      const double a = m * kPi / 180, c = std::cos(a), s = std::sin(a);
      return affine(image, channels, h, w, {c, -s, 0, s, c, 0});
    }
    case TaOp::brightness: return blend(image, channels, plane, factor, [](int64_t, int64_t) { return 0.0f; });
    case TaOp::color: {
      if (channels != 3) return;
      const std::vector<uint8_t> gray = grayscale(image, channels, plane);
      return blend(image, channels, plane, factor, [&](int64_t, int64_t i) { return static_cast<float>(gray[i]); });
    }
    case TaOp::contrast: {
      const std::vector<uint8_t> gray = grayscale(image, channels, plane);
      double sum = 0;  // exact for any image size
      for (uint8_t v : gray) sum += v;
      const auto mean = static_cast<float>(sum / static_cast<double>(plane));
      return blend(image, channels, plane, factor, [&](int64_t, int64_t) { return mean; });
    }
    case TaOp::sharpness: return sharpness(image, channels, h, w, factor);
    case TaOp::posterize: {
      TG_CHECK(m >= 0 && m <= 8, ValueError, "TrivialAugment: posterize keeps 0 to 8 bits, got ", m);
      const auto mask = static_cast<uint8_t>(0xFFu << (8 - static_cast<int>(m)));
      for (int64_t i = 0; i < channels * plane; ++i) image[i] &= mask;
      return;
    }
    case TaOp::solarize:
      for (int64_t i = 0; i < channels * plane; ++i)
        if (image[i] >= m) image[i] = static_cast<uint8_t>(255 - image[i]);
      return;
    case TaOp::auto_contrast: return auto_contrast(image, channels, plane);
    case TaOp::equalize: return equalize(image, channels, plane);
  }
}

}  // namespace tg::data
