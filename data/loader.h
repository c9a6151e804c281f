// DataLoader: serves augmented, shuffled batches of an ImageDataset on a device. The dataset is
// copied to the device once; each epoch's permutation is drawn on the host from (seed, epoch)
// and uploaded once per epoch, so a step launches one kernel and makes no host round trip.
// Batch (epoch, i) is a pure function of (seed, epoch, i): training resumes exactly from a
// checkpointed position. In a data-parallel job each rank's loader serves its shard of every
// epoch (data/shard.h); with the default shard (rank 0 of 1) it serves the whole epoch.
// checkpointed position. With TrivialAugment (host only) the dataset stays on the host and each
// batch is assembled there and copied to the device.
#pragma once

#include <cstdint>

#include "data/augment.h"
#include "data/datasets.h"
#include "data/shard.h"

namespace tg::data {

struct LoaderConfig {
  int64_t batch_size = 64;
  bool shuffle = true;
  bool drop_last = true;  // a short last batch is dropped (training) or kept (evaluation)
  AugmentConfig augment;
  uint64_t seed = 0;
  ShardSpec shard;  // every rank draws the same permutation (same seed) and reads its part
};

struct Batch {
  Tensor images;  // f32 [B, C, S, S] on the loader's device
  Tensor labels;  // i64 [B]
};

class DataLoader {
 public:
  DataLoader(const ImageDataset& dataset, Device device, LoaderConfig config);

  int64_t batches_per_epoch() const;  // this rank's steps per epoch
  int64_t dataset_size() const { return size_; }
  // This rank's batch `index` of `epoch` (0 <= index < batches_per_epoch()).
  Batch batch(int64_t epoch, int64_t index);
  // The permutation of an epoch (host, for tests and checkpoints).
  std::vector<int64_t> permutation(int64_t epoch) const;

 private:
  void prepare_epoch(int64_t epoch);

  Device device_;
  Device assembly_device_;  // where batches are assembled: device_, or the host for TrivialAugment
  LoaderConfig config_;
  int64_t size_, channels_, height_, width_;
  Tensor images_, labels_;  // on assembly_device_
  int64_t prepared_epoch_ = -1;
  Tensor order_;  // i64 [N] permutation of the prepared epoch, on assembly_device_
};

}  // namespace tg::data
