// Image classification datasets in their standard on-disk formats: CIFAR-10 binary, CIFAR-100
// binary (fine or coarse labels), IDX (MNIST / Fashion-MNIST, plain or .gz), and a synthetic
// set for benchmarks and tests. Images are kept as u8 [N, C, H, W] and labels as i64 [N] on the
// host; the loader moves them to the training device once.
//
// Bad input never crashes or yields garbage: a missing file, a truncated file, a wrong magic
// number, a label out of range or a folder without the expected files raises tg::IoError naming
// the file and what is wrong (and, for a missing dataset, where to get it).
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace tg::data {

enum class Split { train, test };

struct ImageDataset {
  std::string name;
  Tensor images;  // u8 [N, C, H, W]
  Tensor labels;  // i64 [N], each in [0, num_classes)
  int64_t num_classes = 0;

  int64_t size() const { return images.size(0); }
  int64_t channels() const { return images.size(1); }
  int64_t height() const { return images.size(2); }
  int64_t width() const { return images.size(3); }
};

// `dir` holds data_batch_1.bin .. data_batch_5.bin and test_batch.bin (or is the parent of a
// cifar-10-batches-bin folder that does).
ImageDataset load_cifar10(const std::string& dir, Split split);
// `dir` holds train.bin and test.bin (or is the parent of cifar-100-binary/).
ImageDataset load_cifar100(const std::string& dir, Split split, bool coarse_labels);
// `dir` holds {train,t10k}-{images-idx3,labels-idx1}-ubyte, each plain or with .gz.
ImageDataset load_fashion_mnist(const std::string& dir, Split split);
// One IDX image file (magic 0x803, u8 [N, H, W]) and its label file (magic 0x801, u8 [N]).
ImageDataset load_idx(const std::string& images_path, const std::string& labels_path, int64_t num_classes,
                      const std::string& name);
// A learnable synthetic set: each class has its own random prototype image; samples are the
// prototype plus noise, both from Philox(seed).
ImageDataset make_synthetic(int64_t size, int64_t channels, int64_t image_size, int64_t num_classes,
                            uint64_t seed);

// The first n samples (views, no copy); n larger than the set keeps all of it.
ImageDataset take_first(const ImageDataset& dataset, int64_t n);

}  // namespace tg::data
