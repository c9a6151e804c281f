// The training and evaluation layouts of shard.h.
#include "data/shard.h"

#include <algorithm>

#include "core/error.h"

namespace tg::data {

namespace {

void check_shard(int64_t size, int64_t batch, ShardSpec shard) {
  TG_CHECK(shard.world_size >= 1 && shard.rank >= 0 && shard.rank < shard.world_size, ValueError,
           "shard: rank must be in [0, world size ", shard.world_size, "), got rank ", shard.rank);
  TG_CHECK(batch > 0, ValueError, "shard: batch size must be positive, got ", batch);
  TG_CHECK(size >= 0, ValueError, "shard: order size must be >= 0, got ", size);
}

// The evaluation block of `rank` is [block_begin(rank), block_begin(rank + 1)): blocks of
// floor(N / W), the first N mod W of them one longer.
int64_t block_begin(int64_t size, int rank, int world_size) {
  return size / world_size * rank + std::min<int64_t>(rank, size % world_size);
}

}  // namespace

int64_t shard_steps(int64_t size, int64_t batch, ShardSpec shard, bool drop_last) {
  check_shard(size, batch, shard);
  if (drop_last) return size / batch / shard.world_size;  // = floor(N / (B·W)) without overflow
  const int64_t block = block_begin(size, shard.rank + 1, shard.world_size) - block_begin(size, shard.rank, shard.world_size);
  return (block + batch - 1) / batch;
}

OrderRange shard_batch(int64_t size, int64_t batch, ShardSpec shard, bool drop_last, int64_t step) {
  const int64_t steps = shard_steps(size, batch, shard, drop_last);
  TG_CHECK(step >= 0 && step < steps, IndexError, "shard: step ", step, " is out of range for rank ", shard.rank,
           "'s ", steps, " steps per epoch");
  if (drop_last) return {(step * shard.world_size + shard.rank) * batch, batch};
  const int64_t begin = block_begin(size, shard.rank, shard.world_size) + step * batch;
  const int64_t end = block_begin(size, shard.rank + 1, shard.world_size);
  return {begin, std::min(batch, end - begin)};
}

}  // namespace tg::data
