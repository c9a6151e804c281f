// Gradient bucket plans (reverse registration order, the 1 MiB first bucket then 25 MiB, per
// dtype, oversized parameters, offsets) and readiness tracking (in-order launch, double marks,
// parameters without a gradient).
#include <doctest/doctest.h>

#include "core/error.h"
#include "dist/buckets.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::dist;

namespace {

constexpr int64_t kMiBFloats = (1 << 20) / 4;  // f32 elements in 1 MiB

// The parameter indices of each bucket, in bucket order.
std::vector<std::vector<int>> params_of(const BucketPlan& plan) {
  std::vector<std::vector<int>> out;
  for (const auto& bucket : plan.buckets) {
    out.emplace_back();
    for (const auto& entry : bucket.entries) out.back().push_back(entry.param);
  }
  return out;
}

}  // namespace

TEST_CASE("buckets take parameters in reverse order: a first bucket of >= 1 MiB, then >= 25 MiB") {
  // Registration order p0..p5; backward produces p5 first.
  const std::vector<BucketParam> params = {{"p0", 10 * kMiBFloats}, {"p1", 10 * kMiBFloats}, {"p2", 10 * kMiBFloats},
                                           {"p3", 20 * kMiBFloats}, {"p4", kMiBFloats / 2}, {"p5", kMiBFloats / 2}};
  const BucketPlan plan = plan_buckets(params);
  // p5 + p4 reach 1 MiB; p3 + p2 reach 30 MiB >= 25; p1 + p0 are what is left.
  CHECK(params_of(plan) == std::vector<std::vector<int>>{{5, 4}, {3, 2}, {1, 0}});
  CHECK(plan.bucket_of == std::vector<int>{2, 2, 1, 1, 0, 0});
  CHECK(plan.buckets[0].bytes() == size_t{1} << 20);
  CHECK(plan.buckets[1].numel == 30 * kMiBFloats);
  CHECK(plan.buckets[1].entries[0].offset == 0);
  CHECK(plan.buckets[1].entries[1].offset == 20 * kMiBFloats);
  CHECK(plan.names == std::vector<std::string>{"p0", "p1", "p2", "p3", "p4", "p5"});
}

TEST_CASE("a parameter larger than the limit closes a bucket of its own; small limits count bytes") {
  BucketOptions options;
  options.first_bucket_bytes = 16;
  options.bucket_bytes = 40;
  // f32 sizes in bytes (reverse order): p4 8, p3 12 -> 20 >= 16 closes; p2 100 alone; p1 4, p0 4 left.
  const std::vector<BucketParam> params = {{"p0", 1}, {"p1", 1}, {"p2", 25}, {"p3", 3}, {"p4", 2}};
  const BucketPlan plan = plan_buckets(params, options);
  CHECK(params_of(plan) == std::vector<std::vector<int>>{{4, 3}, {2}, {1, 0}});
  CHECK(plan.buckets[1].bytes() == 100);
  CHECK(plan.buckets[2].entries[1].offset == 1);
}

TEST_CASE("each dtype fills buckets of its own, ordered by where backward starts them") {
  BucketOptions options;
  options.first_bucket_bytes = 8;
  options.bucket_bytes = 8;
  const std::vector<BucketParam> params = {
      {"a", 2, DType::f32}, {"b", 4, DType::bf16}, {"c", 1, DType::f32}, {"d", 2, DType::bf16}, {"e", 1, DType::f32}};
  const BucketPlan plan = plan_buckets(params, options);
  // Reverse: e(f32 4 B) d(bf16 4 B) c(f32 -> 8 B closes {e, c}) b(bf16 -> 12 B closes {d, b}) a(f32, left open).
  CHECK(params_of(plan) == std::vector<std::vector<int>>{{4, 2}, {3, 1}, {0}});
  CHECK(plan.buckets[0].dtype == DType::f32);
  CHECK(plan.buckets[1].dtype == DType::bf16);
  CHECK(plan.buckets[1].bytes() == 12);
  CHECK(plan.buckets[2].dtype == DType::f32);
}

TEST_CASE("bad bucket inputs are refused with what was found") {
  CHECK(test::thrown_message<ValueError>([] { plan_buckets({{"w", 0}}); }) ==
        "plan_buckets: parameter 'w' has 0 elements; expected at least 1");
  CHECK(test::thrown_message<ValueError>([] { plan_buckets({{"w", 1}}, BucketOptions{0, 1}); }) ==
        "plan_buckets: bucket size limits must be positive, got first 0 and 1 bytes");
  CHECK(plan_buckets({}).buckets.empty());
}

TEST_CASE("a bucket launches when all its gradients are ready and every earlier bucket has launched") {
  BucketOptions options;
  options.first_bucket_bytes = 8;
  options.bucket_bytes = 8;
  const BucketPlan plan = plan_buckets({{"p0", 2}, {"p1", 2}, {"p2", 2}, {"p3", 2}}, options);
  REQUIRE(params_of(plan) == std::vector<std::vector<int>>{{3}, {2}, {1}, {0}});
  BucketTracker tracker(plan);
  // Bucket 1 (p2) completes first but waits for bucket 0 (p3); then both go, in order.
  CHECK(tracker.mark_ready(2).empty());
  CHECK(tracker.mark_ready(3) == std::vector<int>{0, 1});
  CHECK(tracker.mark_ready(1) == std::vector<int>{2});
  CHECK_FALSE(tracker.all_launched());
  CHECK(tracker.mark_ready(0) == std::vector<int>{3});
  CHECK(tracker.all_launched());
  CHECK_NOTHROW(tracker.check_complete());
  CHECK(test::thrown_message<ValueError>([&] { tracker.mark_ready(0); }) ==
        "BucketTracker: parameter 'p0' was marked ready twice in one step");
  tracker.reset();
  CHECK_FALSE(tracker.all_launched());
  CHECK(tracker.mark_ready(3) == std::vector<int>{0});
}

TEST_CASE("a multi-parameter bucket waits for its last gradient; missing gradients are named") {
  const BucketPlan plan = plan_buckets({{"head.weight", 4}, {"head.bias", 2}, {"norm.weight", 2}});
  REQUIRE(plan.buckets.size() == 1);
  BucketTracker tracker(plan);
  CHECK(tracker.mark_ready(2).empty());
  CHECK(test::thrown_message<DistributedError>([&] { tracker.check_complete(); }) ==
        "BucketTracker: backward ended with 2 parameter(s) that got no gradient: 'head.weight', 'head.bias'; data "
        "parallelism needs every parameter's gradient on every rank at every step");
  CHECK(tracker.mark_ready(0).empty());
  CHECK(tracker.mark_ready(1) == std::vector<int>{0});
  CHECK(test::thrown_message<IndexError>([&] { tracker.mark_ready(3); }) ==
        "BucketTracker: parameter index 3 is out of range for 3 parameters");
}
