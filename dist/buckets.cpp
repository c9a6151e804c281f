// plan_buckets and BucketTracker of buckets.h.
#include "dist/buckets.h"

#include <algorithm>
#include <map>

#include "core/error.h"

namespace tg::dist {

BucketPlan plan_buckets(const std::vector<BucketParam>& params, const BucketOptions& options) {
  TG_CHECK(options.first_bucket_bytes > 0 && options.bucket_bytes > 0, ValueError,
           "plan_buckets: bucket size limits must be positive, got first ", options.first_bucket_bytes, " and ",
           options.bucket_bytes, " bytes");
  struct Open {
    Bucket bucket;
    size_t limit;
    int first_position;  // position in reverse order of its first parameter
  };
  std::map<DType, Open> open;  // the bucket being filled, per dtype
  std::vector<std::pair<int, Bucket>> closed;
  const auto close = [&](Open& o) {
    closed.emplace_back(o.first_position, std::move(o.bucket));
    o.bucket = Bucket{};
  };
  for (int position = 0; position < static_cast<int>(params.size()); ++position) {
    const int index = static_cast<int>(params.size()) - 1 - position;
    const BucketParam& p = params[static_cast<size_t>(index)];
    TG_CHECK(p.numel > 0, ValueError, "plan_buckets: parameter '", p.name, "' has ", p.numel,
             " elements; expected at least 1");
    Open& o = open.try_emplace(p.dtype, Open{Bucket{}, options.first_bucket_bytes, position}).first->second;
    if (o.bucket.entries.empty()) {
      o.bucket.dtype = p.dtype;
      o.first_position = position;
    }
    o.bucket.entries.push_back({index, o.bucket.numel});
    o.bucket.numel += p.numel;
    if (o.bucket.bytes() >= o.limit) {
      close(o);
      o.limit = options.bucket_bytes;
    }
  }
  for (auto& [dtype, o] : open)
    if (!o.bucket.entries.empty()) close(o);
  // Launch order: by each bucket's first parameter in reverse registration order (PyTorch sorts
  // the same way), so buckets of different dtypes interleave as backward fills them.
  std::stable_sort(closed.begin(), closed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  BucketPlan plan;
  plan.bucket_of.resize(params.size());
  for (const auto& p : params) plan.names.push_back(p.name);
  for (auto& [position, bucket] : closed) {
    for (const auto& entry : bucket.entries) plan.bucket_of[static_cast<size_t>(entry.param)] = static_cast<int>(plan.buckets.size());
    plan.buckets.push_back(std::move(bucket));
  }
  return plan;
}

BucketTracker::BucketTracker(const BucketPlan& plan) : plan_(plan) { reset(); }

void BucketTracker::reset() {
  ready_.assign(plan_.names.size(), false);
  pending_.clear();
  for (const auto& bucket : plan_.buckets) pending_.push_back(static_cast<int64_t>(bucket.entries.size()));
  next_launch_ = 0;
}

std::vector<int> BucketTracker::mark_ready(int param) {
  TG_CHECK(param >= 0 && param < static_cast<int>(ready_.size()), IndexError, "BucketTracker: parameter index ",
           param, " is out of range for ", ready_.size(), " parameters");
  TG_CHECK(!ready_[static_cast<size_t>(param)], ValueError, "BucketTracker: parameter '",
           plan_.names[static_cast<size_t>(param)], "' was marked ready twice in one step");
  ready_[static_cast<size_t>(param)] = true;
  --pending_[static_cast<size_t>(plan_.bucket_of[static_cast<size_t>(param)])];
  std::vector<int> launch;
  while (next_launch_ < static_cast<int>(pending_.size()) && pending_[static_cast<size_t>(next_launch_)] == 0)
    launch.push_back(next_launch_++);
  return launch;
}

void BucketTracker::check_complete() const {
  std::string missing;
  int count = 0;
  for (size_t i = 0; i < ready_.size(); ++i)
    if (!ready_[i]) {
      missing += (missing.empty() ? "'" : ", '") + plan_.names[i] + "'";
      ++count;
    }
  TG_CHECK(count == 0, DistributedError, "BucketTracker: backward ended with ", count,
           " parameter(s) that got no gradient: ", missing,
           "; data parallelism needs every parameter's gradient on every rank at every step");
}

}  // namespace tg::dist
