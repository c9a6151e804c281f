// Sharding of an epoch's order: the training layout (disjoint shards, equal step counts, union
// = batch s of a one-rank run with batch B·W, the partial global batch dropped), the
// evaluation layout (every position exactly once), and a sharded DataLoader serving the
// samples of the one-rank loader.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>

#include "data/loader.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::data;

TEST_CASE("training shards: same steps on every rank, disjoint, union = the one-rank batch of B x W") {
  for (const int64_t size : {10, 23, 24, 100}) {
    for (const int world : {1, 2, 3, 4}) {
      const int64_t batch = 3;
      if (size < batch * world) continue;
      CAPTURE(size);
      CAPTURE(world);
      const int64_t steps = size / (batch * world);
      std::vector<int64_t> seen;
      for (int rank = 0; rank < world; ++rank) {
        REQUIRE(shard_steps(size, batch, {rank, world}, true) == steps);
        for (int64_t step = 0; step < steps; ++step) {
          const OrderRange range = shard_batch(size, batch, {rank, world}, true, step);
          CHECK(range.count == batch);
          // Inside global batch `step`, rank r holds the r-th B positions.
          CHECK(range.start == step * batch * world + rank * batch);
          for (int64_t i = 0; i < range.count; ++i) seen.push_back(range.start + i);
        }
      }
      std::sort(seen.begin(), seen.end());
      std::vector<int64_t> expected(static_cast<size_t>(steps * batch * world));
      for (size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<int64_t>(i);
      CHECK(seen == expected);  // disjoint, and only the last size mod (B·W) positions dropped
    }
  }
  // 23 positions, B 3, W 2: 3 steps of 6, positions 18..22 dropped.
  CHECK(shard_batch(23, 3, {1, 2}, true, 2) == OrderRange{15, 3});
  CHECK(shard_steps(23, 3, {0, 2}, true) == 3);
}

TEST_CASE("evaluation shards: contiguous blocks differing by at most one, every position exactly once") {
  // 11 positions over 3 ranks: blocks [0, 4), [4, 8), [8, 11); B 3.
  CHECK(shard_steps(11, 3, {0, 3}, false) == 2);
  CHECK(shard_steps(11, 3, {2, 3}, false) == 1);
  CHECK(shard_batch(11, 3, {0, 3}, false, 1) == OrderRange{3, 1});
  CHECK(shard_batch(11, 3, {1, 3}, false, 0) == OrderRange{4, 3});
  CHECK(shard_batch(11, 3, {1, 3}, false, 1) == OrderRange{7, 1});
  CHECK(shard_batch(11, 3, {2, 3}, false, 0) == OrderRange{8, 3});
  for (const int64_t size : {1, 5, 11, 64}) {
    for (const int world : {1, 2, 3, 8}) {
      CAPTURE(size);
      CAPTURE(world);
      std::vector<int> hits(static_cast<size_t>(size), 0);
      std::vector<int64_t> counts;
      int64_t next = 0;  // blocks are contiguous and in rank order
      for (int rank = 0; rank < world; ++rank) {
        counts.push_back(0);
        for (int64_t step = 0; step < shard_steps(size, 4, {rank, world}, false); ++step) {
          const OrderRange range = shard_batch(size, 4, {rank, world}, false, step);
          CHECK(range.start == next);
          CHECK(range.count >= 1);
          CHECK(range.count <= 4);
          next += range.count;
          counts.back() += range.count;
          for (int64_t i = 0; i < range.count; ++i) ++hits[static_cast<size_t>(range.start + i)];
        }
      }
      CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
      CHECK(*std::max_element(counts.begin(), counts.end()) - *std::min_element(counts.begin(), counts.end()) <= 1);
    }
  }
  CHECK(shard_steps(2, 4, {0, 3}, false) == 1);  // blocks [0, 1), [1, 2), [2, 2): rank 2 has none
  CHECK(shard_steps(2, 4, {2, 3}, false) == 0);
}

TEST_CASE("bad shards and steps are refused with what was found") {
  CHECK(test::thrown_message<ValueError>([] { shard_steps(10, 2, {2, 2}, true); }) ==
        "shard: rank must be in [0, world size 2), got rank 2");
  CHECK(test::thrown_message<ValueError>([] { shard_steps(10, 2, {0, 0}, true); }) ==
        "shard: rank must be in [0, world size 0), got rank 0");
  CHECK(test::thrown_message<ValueError>([] { shard_steps(10, 0, {0, 1}, true); }) ==
        "shard: batch size must be positive, got 0");
  CHECK(test::thrown_message<IndexError>([] { shard_batch(10, 2, {1, 2}, true, 2); }) ==
        "shard: step 2 is out of range for rank 1's 2 steps per epoch");
}

TEST_CASE("sharded loaders serve between them exactly the samples of the one-rank loader with batch B x W") {
  const ImageDataset d = make_synthetic(21, 1, 4, 21, 5);  // 21 classes: a label names its sample
  LoaderConfig whole;
  whole.batch_size = 10;
  whole.seed = 3;
  DataLoader single(d, Device::cpu(), whole);
  REQUIRE(single.batches_per_epoch() == 2);
  std::vector<DataLoader> ranks;
  for (int r = 0; r < 2; ++r) {
    LoaderConfig config = whole;
    config.batch_size = 5;
    config.shard = {r, 2};
    ranks.emplace_back(d, Device::cpu(), config);
    CHECK(ranks.back().batches_per_epoch() == 2);
  }
  for (int64_t epoch = 0; epoch < 2; ++epoch)
    for (int64_t step = 0; step < 2; ++step) {
      const Batch one = single.batch(epoch, step);
      const Batch r0 = ranks[0].batch(epoch, step), r1 = ranks[1].batch(epoch, step);
      std::vector<int64_t> joined = r0.labels.to_vector<int64_t>();
      const auto second = r1.labels.to_vector<int64_t>();
      joined.insert(joined.end(), second.begin(), second.end());
      CHECK(joined == one.labels.to_vector<int64_t>());
      std::vector<float> images = r0.images.to_vector<float>();
      const auto more = r1.images.to_vector<float>();
      images.insert(images.end(), more.begin(), more.end());
      CHECK(images == one.images.to_vector<float>());
    }
  LoaderConfig too_big = whole;
  too_big.batch_size = 8;
  too_big.shard = {0, 3};
  CHECK(test::thrown_message<ValueError>([&] { DataLoader(d, Device::cpu(), too_big); }) ==
        "DataLoader: dataset 'synthetic' has 21 samples, fewer than one batch of 8 for each of 3 ranks");
}
