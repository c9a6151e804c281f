// Augmentation parameters and device dispatch.
#include "data/augment.h"

namespace tg::data {

AugmentParams make_augment_params(const AugmentConfig& config, int64_t channels, int64_t height, int64_t width,
                                  uint64_t seed, uint64_t epoch) {
  TG_CHECK(channels >= 1 && channels <= 4, ValueError, "augment: expected 1 to 4 channels, got ", channels);
  TG_CHECK(config.crop_padding >= 0 && config.output_size >= 0, ValueError,
           "augment: crop padding and output size must be non-negative, got ", config.crop_padding, " and ",
           config.output_size);
  TG_CHECK(config.mean.size() == config.std.size() && (config.mean.empty() || static_cast<int64_t>(config.mean.size()) == channels),
           ValueError, "augment: expected ", channels, " per-channel mean and std values, got ", config.mean.size(),
           " and ", config.std.size());
  AugmentParams p{};
  p.channels = channels;
  p.height = height;
  p.width = width;
  p.output_size = config.output_size == 0 ? height : config.output_size;
  TG_CHECK(config.output_size != 0 || height == width, ValueError, "augment: non-square images (", height, "x", width,
           ") need an explicit output size");
  p.crop_padding = config.crop_padding;
  p.flip = config.horizontal_flip;
  p.trivial_augment = config.trivial_augment;
  TG_CHECK(!config.trivial_augment || channels == 1 || channels == 3, ValueError,
           "augment: TrivialAugment needs images of 1 or 3 channels, got ", channels);
  p.seed = seed;
  p.epoch = epoch;
  for (int64_t c = 0; c < channels; ++c) {
    const size_t i = static_cast<size_t>(c);
    p.mean[c] = config.mean.empty() ? 0.0f : config.mean[i];
    const float std = config.std.empty() ? 1.0f : config.std[i];
    TG_CHECK(std > 0, ValueError, "augment: std of channel ", c, " must be positive, got ", std);
    p.inv_std[c] = 1.0f / std;
  }
  return p;
}

void augment_batch(const Tensor& out, const Tensor& labels_out, const Tensor& images, const Tensor& labels,
                   const Tensor& indices, const AugmentParams& params) {
  TG_INTERNAL_ASSERT(images.dtype() == DType::u8 && images.is_contiguous() && indices.dtype() == DType::i64 &&
                     out.dtype() == DType::f32 && labels.dtype() == DType::i64, "augment_batch operand types");
  if (out.device().is_cpu()) {
    cpu::augment_batch(out, labels_out, images, labels, indices, params);
    return;
  }
  TG_CHECK(!params.trivial_augment, NotImplementedError, "augment_batch: TrivialAugment runs on the host only, but the "
           "batch is on ", out.device().str(), " (assemble it on the CPU and copy it, as DataLoader does)");
#if TG_WITH_CUDA
  cuda::augment_batch(out, labels_out, images, labels, indices, params);
#endif
}

}  // namespace tg::data
