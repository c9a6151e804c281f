// Gradient bucketing for the data-parallel all-reduce, as PyTorch DDP does it: parameters are
// taken in reverse registration order (backward produces the last layers' gradients first),
// grouped per dtype into buckets, and a bucket is closed once it holds at least its size limit:
// `first_bucket_bytes` (1 MiB) for the first bucket of each dtype, so that communication starts
// early in backward, then `bucket_bytes` (25 MiB). A parameter larger than the limit closes its
// bucket on its own; a bucket may exceed its limit by its last parameter.
//
// BucketTracker follows one backward: parameters are marked ready as their gradients become
// final; a bucket is complete when all its parameters are. Buckets are launched in plan order
// only (a complete bucket waits for the earlier ones), because every rank must issue its NCCL
// collectives in the same order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace tg::dist {

struct BucketParam {
  std::string name;
  int64_t numel = 0;
  DType dtype = DType::f32;
};

struct BucketOptions {
  size_t first_bucket_bytes = size_t{1} << 20;  // torch.distributed's _DEFAULT_FIRST_BUCKET_BYTES
  size_t bucket_bytes = size_t{25} << 20;       // DDP's bucket_cap_mb = 25
};

struct BucketEntry {
  int param = 0;       // index in registration order
  int64_t offset = 0;  // elements from the start of the bucket's flat buffer
};

struct Bucket {
  DType dtype = DType::f32;
  std::vector<BucketEntry> entries;  // in the order backward is expected to produce them
  int64_t numel = 0;
  size_t bytes() const { return static_cast<size_t>(numel) * dtype_size(dtype); }
};

struct BucketPlan {
  std::vector<Bucket> buckets;  // in launch order
  std::vector<int> bucket_of;   // per parameter (registration order): its bucket
  std::vector<std::string> names;
};

// ValueError for a parameter with no elements or a zero size limit.
BucketPlan plan_buckets(const std::vector<BucketParam>& params, const BucketOptions& options = {});

class BucketTracker {
 public:
  explicit BucketTracker(const BucketPlan& plan);

  // The gradient of parameter `param` (registration index) is final for this step. Returns the
  // buckets that may be launched now, in plan order (possibly none). ValueError when the
  // parameter was already marked in this step, IndexError when there is no such parameter.
  std::vector<int> mark_ready(int param);
  // The end of backward: DistributedError listing the parameters that got no gradient (every
  // rank must produce every gradient every step, or the ranks' collectives would not match).
  void check_complete() const;
  // For the next step.
  void reset();

  bool all_launched() const { return next_launch_ == static_cast<int>(plan_.buckets.size()); }

 private:
  BucketPlan plan_;
  std::vector<bool> ready_;           // per parameter
  std::vector<int64_t> pending_;      // per bucket: parameters not ready yet
  int next_launch_ = 0;
};

}  // namespace tg::dist
