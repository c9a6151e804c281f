// DataLoader: epoch permutations (seeded Fisher-Yates on the host) and batch assembly.
#include "data/loader.h"

#include <numeric>
#include <random>

namespace tg::data {

DataLoader::DataLoader(const ImageDataset& dataset, Device device, LoaderConfig config)
    : device_(device), assembly_device_(config.augment.trivial_augment ? Device::cpu() : device),
      config_(std::move(config)), size_(dataset.size()), channels_(dataset.channels()),
      height_(dataset.height()), width_(dataset.width()) {
  TG_CHECK(config_.batch_size > 0, ValueError, "DataLoader: batch size must be positive, got ", config_.batch_size);
  TG_CHECK(size_ > 0, ValueError, "DataLoader: dataset '", dataset.name, "' is empty");
  (void)shard_steps(size_, config_.batch_size, config_.shard, config_.drop_last);  // validates the shard
  TG_CHECK(!config_.drop_last || size_ / config_.batch_size >= config_.shard.world_size, ValueError,
           "DataLoader: dataset '", dataset.name, "' has ", size_, " samples, fewer than one batch of ",
           config_.batch_size,
           config_.shard.world_size > 1 ? " for each of " + std::to_string(config_.shard.world_size) + " ranks" : "");
  // Validate the augmentation once, before any work.
  (void)make_augment_params(config_.augment, channels_, height_, width_, config_.seed, 0);
  images_ = dataset.images.raw_contiguous().to(assembly_device_);
  labels_ = dataset.labels.raw_contiguous().to(assembly_device_);
}

int64_t DataLoader::batches_per_epoch() const {
  return shard_steps(size_, config_.batch_size, config_.shard, config_.drop_last);
}

std::vector<int64_t> DataLoader::permutation(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(size_));
  std::iota(order.begin(), order.end(), 0);
  if (config_.shuffle) {
    std::mt19937_64 rng(config_.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch));
    for (size_t i = order.size() - 1; i > 0; --i) {
      // Unbiased index in [0, i] without relying on the library's distribution implementation.
      const uint64_t bound = i + 1, limit = UINT64_MAX - UINT64_MAX % bound;
      uint64_t r;
      do r = rng(); while (r >= limit);
      std::swap(order[i], order[static_cast<size_t>(r % bound)]);
    }
  }
  return order;
}

void DataLoader::prepare_epoch(int64_t epoch) {
  if (epoch == prepared_epoch_) return;
  order_ = from_vector(permutation(epoch), {size_}, assembly_device_);
  prepared_epoch_ = epoch;
}

Batch DataLoader::batch(int64_t epoch, int64_t index) {
  TG_CHECK(index >= 0 && index < batches_per_epoch(), IndexError, "DataLoader: batch ", index,
           " is out of range for an epoch of ", batches_per_epoch(), " batches");
  prepare_epoch(epoch);
  const auto [start, count] = shard_batch(size_, config_.batch_size, config_.shard, config_.drop_last, index);
  const AugmentParams params =
      make_augment_params(config_.augment, channels_, height_, width_, config_.seed, static_cast<uint64_t>(epoch));
  Batch batch{empty({count, channels_, params.output_size, params.output_size}, DType::f32, assembly_device_),
              empty({count}, DType::i64, assembly_device_)};
  augment_batch(batch.images, batch.labels, images_, labels_, order_.raw_narrow(0, start, count), params);
  if (assembly_device_ != device_) return {batch.images.to(device_), batch.labels.to(device_)};
  return batch;
}

}  // namespace tg::data
