// Batch assembly with augmentation: gathers images of a dataset (u8 [N, C, H, W], on the host
// or on the device) by index into a normalized f32 batch [B, C, S, S], applying per image a
// random crop of the zero-padded image, a random horizontal flip and a bilinear resize to S.
// The random choices of image i of a batch come from Philox(seed, block = sample_key[i],
// subsequence = epoch), so CPU and GPU produce the same batch and a run resumes exactly.
// With TrivialAugment (data/trivial_augment.h) each image is first transformed on the host; the
// CPU kernel alone does that (the loader assembles such batches on the host).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace tg::data {

struct AugmentConfig {
  int64_t crop_padding = 0;     // random crop of the image padded by this many zero pixels
  bool horizontal_flip = false; // flip with probability 1/2
  int64_t output_size = 0;      // bilinear resize to this size (0: the image size)
  std::vector<float> mean;      // per channel, applied to pixel / 255
  std::vector<float> std;
  bool trivial_augment = false; // TrivialAugment before the crop (host only)
};

// Geometry and normalization constants passed to the kernels.
struct AugmentParams {
  int64_t channels, height, width, output_size, crop_padding;
  bool flip, trivial_augment;
  uint64_t seed, epoch;
  float mean[4], inv_std[4];
};

AugmentParams make_augment_params(const AugmentConfig& config, int64_t channels, int64_t height, int64_t width,
                                  uint64_t seed, uint64_t epoch);

// out[b] = augment(images[indices[b]]); labels_out[b] = labels[indices[b]]. `indices` (i64 [B])
// and all tensors live on one device; out is f32 [B, C, S, S], labels_out i64 [B].
void augment_batch(const Tensor& out, const Tensor& labels_out, const Tensor& images, const Tensor& labels,
                   const Tensor& indices, const AugmentParams& params);

namespace cpu {
void augment_batch(const Tensor& out, const Tensor& labels_out, const Tensor& images, const Tensor& labels,
                   const Tensor& indices, const AugmentParams& params);
}
#if TG_WITH_CUDA
namespace cuda {
void augment_batch(const Tensor& out, const Tensor& labels_out, const Tensor& images, const Tensor& labels,
                   const Tensor& indices, const AugmentParams& params);
}
#endif

}  // namespace tg::data
