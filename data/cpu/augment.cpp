// CPU batch assembly with augmentation (same arithmetic as data/cuda/augment.cu), and
// TrivialAugment, which only the host runs.
#include <vector>

#include "data/augment_pixel.h"
#include "data/trivial_augment.h"

namespace tg::data::cpu {

void augment_batch(const Tensor& out, const Tensor& labels_out, const Tensor& images, const Tensor& labels,
                   const Tensor& indices, const AugmentParams& p) {
  const int64_t batch = indices.numel(), s = p.output_size;
  const auto* index = indices.data<int64_t>();
  const auto* pixels = images.data<uint8_t>();
  const auto* label = labels.data<int64_t>();
  float* o = out.data<float>();
  int64_t* lo = labels_out.data<int64_t>();
  const int64_t image_size = p.channels * p.height * p.width;
  std::vector<uint8_t> transformed(p.trivial_augment ? static_cast<size_t>(image_size) : 0);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t sample = index[b];
    const ImageChoice choice = choose(p, static_cast<uint64_t>(sample));
    const uint8_t* image = pixels + sample * image_size;
    if (p.trivial_augment) {
      const TaChoice ta = choose_trivial_augment(p.seed, static_cast<uint64_t>(sample), p.epoch);
      std::copy(image, image + image_size, transformed.begin());
      apply_ta_op(ta.op, ta.magnitude, transformed.data(), p.channels, p.height, p.width);
      image = transformed.data();
    }
    for (int64_t c = 0; c < p.channels; ++c)
      for (int64_t y = 0; y < s; ++y)
        for (int64_t x = 0; x < s; ++x) o[((b * p.channels + c) * s + y) * s + x] = augmented_pixel(image, p, choice, c, y, x);
    lo[b] = label[sample];
  }
}

}  // namespace tg::data::cpu
