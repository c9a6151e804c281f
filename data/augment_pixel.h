// The per-pixel augmentation shared by data/cpu/augment.cpp and data/cuda/augment.cu.
#pragma once

#include <cmath>

#include "core/philox.h"
#include "data/augment.h"

namespace tg::data {

struct ImageChoice {
  int64_t crop_y, crop_x;  // top-left of the crop in padded coordinates, in [0, 2 * padding]
  bool flip;
};

// The random choices for one sample (`key` identifies the sample; the epoch is the subsequence).
TG_HOST_DEVICE inline ImageChoice choose(const AugmentParams& p, uint64_t key) {
  const philox::Block r = philox::generate(p.seed, key, p.epoch);
  const uint32_t span = static_cast<uint32_t>(2 * p.crop_padding + 1);
  return {static_cast<int64_t>(r.w[0] % span), static_cast<int64_t>(r.w[1] % span), p.flip && (r.w[2] & 1u)};
}

// Source pixel (c, y, x) of the padded image, zero outside the original.
TG_HOST_DEVICE inline float padded_pixel(const uint8_t* image, const AugmentParams& p, int64_t c, int64_t y, int64_t x) {
  if (y < 0 || y >= p.height || x < 0 || x >= p.width) return 0.0f;
  return static_cast<float>(image[(c * p.height + y) * p.width + x]);
}

// Normalized output pixel (c, oy, ox) of the augmented image. The crop window has the original
// size (H x W) at (crop_y - pad, crop_x - pad); it is resized to S x S with bilinear sampling
// (half-pixel centres, as torchvision's antialias-free resize), then mirrored if flipped.
TG_HOST_DEVICE inline float augmented_pixel(const uint8_t* image, const AugmentParams& p, const ImageChoice& choice,
                                            int64_t c, int64_t oy, int64_t ox) {
  const int64_t x_out = choice.flip ? p.output_size - 1 - ox : ox;
  const int64_t top = choice.crop_y - p.crop_padding, left = choice.crop_x - p.crop_padding;
  float value;
  if (p.output_size == p.height && p.output_size == p.width) {
    value = padded_pixel(image, p, c, top + oy, left + x_out);
  } else {
    const float sy = fmaxf((static_cast<float>(oy) + 0.5f) * static_cast<float>(p.height) / static_cast<float>(p.output_size) - 0.5f, 0.0f);
    const float sx = fmaxf((static_cast<float>(x_out) + 0.5f) * static_cast<float>(p.width) / static_cast<float>(p.output_size) - 0.5f, 0.0f);
    const int64_t y0 = static_cast<int64_t>(sy), x0 = static_cast<int64_t>(sx);
    const int64_t y1 = y0 + 1 < p.height ? y0 + 1 : y0, x1 = x0 + 1 < p.width ? x0 + 1 : x0;
    const float fy = sy - static_cast<float>(y0), fx = sx - static_cast<float>(x0);
    const float v00 = padded_pixel(image, p, c, top + y0, left + x0), v01 = padded_pixel(image, p, c, top + y0, left + x1);
    const float v10 = padded_pixel(image, p, c, top + y1, left + x0), v11 = padded_pixel(image, p, c, top + y1, left + x1);
    value = (v00 * (1 - fx) + v01 * fx) * (1 - fy) + (v10 * (1 - fx) + v11 * fx) * fy;
  }
  return (value * (1.0f / 255.0f) - p.mean[c]) * p.inv_std[c];
}

}  // namespace tg::data
