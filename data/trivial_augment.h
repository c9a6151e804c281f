// TrivialAugment (Müller & Hutter, 2021), as torchvision's TrivialAugmentWide on uint8 tensors:
// per image one operation drawn uniformly from the 14 below, one of 31 magnitude bins drawn
// uniformly, and for signed operations a random sign. It runs on the host, on the u8 image
// before the crop / flip / resize / normalize of data/augment.h (torchvision applies it to the
// cropped and flipped image; the operations are as likely mirrored as not, and the crop only
// shifts the geometric ones, so the order changes no distribution that matters).
//
// The geometric operations map output pixel (x, y) to a source pixel by torchvision's inverse
// affine matrix around the image centre, rounded to the nearest pixel (half to even, as
// grid_sample's nearest mode), zero outside the image:
//   shear-x m:  source (x + m * (y + 0.5), y)  (torchvision shears about the corner (0, 0))
//   shear-y m:  source (x, y + m * (x + 0.5))
//   translate:  source (x - t, y) / (x, y - t), t = int(magnitude) pixels
//   rotate a:   counter-clockwise by a degrees about the centre
// The colour operations are torchvision's tensor versions, in float32: blends clamp to [0, 255]
// and truncate to uint8; grayscale = 0.2989 R + 0.587 G + 0.114 B truncated (an image with one channel is its
// own grayscale, so colour is the identity there).
// Choices come from Philox(stream_seed(seed, kTrivialAugmentStream), block = sample key,
// subsequence = epoch), so they are a pure function of (seed, sample, epoch).
#pragma once

#include <cstdint>

namespace tg::data {

enum class TaOp {
  identity, shear_x, shear_y, translate_x, translate_y, rotate, brightness, color, contrast, sharpness,
  posterize, solarize, auto_contrast, equalize
};
constexpr int kTaOps = 14, kTaBins = 31;

// The magnitude of bin `bin` (0..30) of `op`, torchvision's _augmentation_space(31): shear,
// brightness, color, contrast, sharpness linspace(0, 0.99); translate linspace(0, 32) pixels;
// rotate linspace(0, 135) degrees; posterize 8 - round(bin / 5) bits; solarize
// linspace(255, 0); 0 for the operations without one.
double ta_magnitude(TaOp op, int bin);
bool ta_signed(TaOp op);  // the magnitude gets a random sign

struct TaChoice {
  TaOp op = TaOp::identity;
  double magnitude = 0;  // signed
};
TaChoice choose_trivial_augment(uint64_t seed, uint64_t key, uint64_t epoch);

// Applies `op` with `magnitude` (factors are 1 + magnitude; posterize: bits; solarize: the
// threshold) to image [C, H, W] (u8, C = 1 or 3) in place.
void apply_ta_op(TaOp op, double magnitude, uint8_t* image, int64_t channels, int64_t height, int64_t width);

}  // namespace tg::data
