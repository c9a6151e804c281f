// Mixup and CutMix with label mixing, as timm's Mixup in its default 'batch' mode: with
// probability `prob` a batch is mixed; by CutMix with probability `switch_prob` when both are
// enabled, else by whichever is; lam ~ Beta(alpha, alpha) of the chosen method. Image b is mixed
// with image B-1-b (the batch flipped, timm's x.flip(0)):
//   mixup:  x'[b] = lam * x[b] + (1 - lam) * x[B-1-b]
//   cutmix: x'[b] = x[b] with the box [top, top+height) x [left, left+width) of x[B-1-b] pasted
//           in; the box is timm's rand_bbox (sides sqrt(1 - lam) of the image's, centred on a
//           uniform pixel, clipped), and lam becomes the kept area's share (correct_lam).
// The targets are timm's soft ones, lam * smooth(y[b]) + (1 - lam) * smooth(y[B-1-b]) with
// smooth(y) = (1 - eps) * onehot(y) + eps / C; cross entropy is linear in its target, so the
// loss is lam * CE(logits, y, eps) + (1 - lam) * CE(logits, y flipped, eps): two cross-entropy
// nodes that both keep the logits (one tensor), no soft-target kernel.
// The choice of batch `step` is a pure function of (seed, step): Philox keyed by
// stream_seed(seed, kMixupStream), subsequence = step, so a resumed run mixes as a straight one.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace tg::nn {

struct MixupConfig {
  double mixup_alpha = 0;   // Beta(alpha, alpha) of mixup; 0: off
  double cutmix_alpha = 0;  // Beta(alpha, alpha) of cutmix; 0: off
  double prob = 1;          // probability that a batch is mixed at all
  double switch_prob = 0.5; // with both on: probability of cutmix instead of mixup
  bool enabled() const { return mixup_alpha > 0 || cutmix_alpha > 0; }
};

struct MixChoice {
  bool mixed = false;
  bool cutmix = false;
  double lam = 1;  // the weight of the batch's own images and labels
  int64_t top = 0, left = 0, height = 0, width = 0;  // cutmix: the pasted box
};

class Mixup {
 public:
  // ValueError for an alpha < 0 or non-finite, or a probability outside [0, 1].
  Mixup(const MixupConfig& config, uint64_t seed);

  // The mixing of batch `step` for images of height x width.
  MixChoice choose(uint64_t step, int64_t height, int64_t width) const;
  // images [B, C, H, W] (floating) mixed as `choice` says, a new tensor; the input itself when
  // !choice.mixed. Not recorded (the images are data).
  Tensor mix_images(const Tensor& images, const MixChoice& choice);
  // The mean cross entropy of logits [N, C] against the mixed soft targets of labels [N].
  Tensor loss(const Tensor& logits, const Tensor& labels, const MixChoice& choice, double label_smoothing);

 private:
  // x with its rows (dim 0) in reverse order. The index tensor is kept per batch size and
  // device: uploading one each step would synchronize the host with the GPU.
  Tensor flip_rows(const Tensor& x);

  MixupConfig config_;
  uint64_t key_;
  Tensor reversed_;  // i64 [B]: B-1, ..., 0
};

}  // namespace tg::nn
