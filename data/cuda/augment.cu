// CUDA batch assembly with augmentation: one thread per output pixel, reading the u8 dataset
// that lives in device memory (same arithmetic as data/cpu/augment.cpp).
#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "data/augment_pixel.h"

namespace tg::data::cuda {

namespace {
__global__ void augment_kernel(float* out, int64_t* labels_out, const uint8_t* pixels, const int64_t* labels,
                               const int64_t* indices, int64_t batch, AugmentParams p) {
  const int64_t s = p.output_size, per_image = p.channels * s * s;
  const int64_t image_size = p.channels * p.height * p.width;
  TG_GRID_STRIDE_LOOP(i, batch * per_image) {
    const int64_t b = i / per_image, rest = i % per_image;
    const int64_t c = rest / (s * s), y = (rest / s) % s, x = rest % s;
    const int64_t sample = indices[b];
    const ImageChoice choice = choose(p, static_cast<uint64_t>(sample));
    out[i] = augmented_pixel(pixels + sample * image_size, p, choice, c, y, x);
    if (rest == 0) labels_out[b] = labels[sample];
  }
}
}  // namespace

void augment_batch(const Tensor& out, const Tensor& labels_out, const Tensor& images, const Tensor& labels,
                   const Tensor& indices, const AugmentParams& p) {
  const int64_t batch = indices.numel();
  const int64_t total = batch * p.channels * p.output_size * p.output_size;
  if (total == 0) return;
  DeviceGuard guard(out.device().index);
  augment_kernel<<<grid_for(total), kBlockSize, 0, current_stream()>>>(
      out.data<float>(), labels_out.data<int64_t>(), images.data<uint8_t>(), labels.data<int64_t>(),
      indices.data<int64_t>(), batch, p);
  TG_CUDA_CHECK_LAUNCH();
}

}  // namespace tg::data::cuda
