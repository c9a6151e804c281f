// Sharding of an epoch's order across the ranks of a data-parallel job (docs/distributed.md,
// "Data"). Positions index the epoch's permutation (DataLoader::permutation), not samples.
//
// Training (drop_last): global step s covers positions [s·B·W, (s+1)·B·W) of the order —
// exactly batch s of a one-rank run with batch B·W — and rank r takes the r-th B of them. Every
// rank runs the same number of steps, floor(N / (B·W)); the last N mod (B·W) positions of the
// order (the partial global batch) are dropped, as a one-rank run with batch B·W drops them.
// Evaluation (keep the last batch): the order is cut into W contiguous blocks of floor(N / W)
// positions, the first N mod W blocks one longer; rank r batches block r by B, its last batch
// short. Every sample is seen exactly once (no padding, so sums of correct predictions reduce
// to the exact accuracy); step counts may differ by one between ranks.
#pragma once

#include <cstdint>

namespace tg::data {

struct ShardSpec {
  int rank = 0;
  int world_size = 1;
};

// Positions [start, start + count) of the epoch's order.
struct OrderRange {
  int64_t start = 0;
  int64_t count = 0;
  friend bool operator==(const OrderRange&, const OrderRange&) = default;
};

// Steps of one epoch for `shard` over an order of `size` positions with per-rank batch `batch`.
// ValueError for a shard outside [0, world_size) or a non-positive batch or world size.
int64_t shard_steps(int64_t size, int64_t batch, ShardSpec shard, bool drop_last);
// The positions rank `shard.rank` reads at `step` (0 <= step < shard_steps; IndexError otherwise).
OrderRange shard_batch(int64_t size, int64_t batch, ShardSpec shard, bool drop_last, int64_t step);

}  // namespace tg::data
