// The gradient reducer: two ranks in threads, each with its own data, end backward holding the
// exact average of their gradients (as views of the buckets), with every bucket launched from
// the hooks, over two steps; a parameter without a gradient is named at the end of backward.
#include <doctest/doctest.h>

#include <thread>

#include "autograd/engine.h"
#include "core/error.h"
#include "dist/grad_reducer.h"
#include "dist/store_communicator.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tests/dist/store_fixture.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::dist;

namespace {

// Three parameters of 12, 4 and 8 f32. With a 48-byte first bucket and 16 bytes after it, the
// plan (reverse order) is {w2, b1}, {w1}.
NamedTensors make_parameters() {
  NamedTensors params = {{"w1", zeros({4, 3})}, {"b1", zeros({4})}, {"w2", zeros({2, 4})}};
  for (auto& [name, p] : params) p.set_requires_grad(true);
  return params;
}

// loss = sum_p sum(p * x_p): the gradient of p is x_p, whose values are (rank + 1) * (1 + index)
// plus the step.
Tensor loss_of(const NamedTensors& params, int rank, int step) {
  Tensor loss;
  for (const auto& [name, p] : params) {
    std::vector<float> x(static_cast<size_t>(p.numel()));
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((rank + 1) * (1 + static_cast<int>(i)) + step);
    const Tensor term = sum(mul(p, from_vector<float>(x, p.shape())));
    loss = loss.defined() ? add(loss, term) : term;
  }
  return loss;
}

BucketOptions small_buckets() {
  BucketOptions options;
  options.first_bucket_bytes = 48;
  options.bucket_bytes = 16;
  return options;
}

}  // namespace

TEST_CASE("two ranks end backward with the exact average of their gradients, launched from the hooks") {
  TcpStore store0(test::store_options(0, 2, 0));
  std::vector<std::vector<std::vector<float>>> grads(2);  // rank -> step * 3 + param -> values
  std::vector<int64_t> launched(2), buckets(2);
  const auto rank = [&](TcpStore& store) {
    const int r = store.rank();
    StoreCommunicator comm(store);
    const NamedTensors params = make_parameters();
    GradientReducer reducer(params, comm, small_buckets());
    buckets[static_cast<size_t>(r)] = static_cast<int64_t>(reducer.plan().buckets.size());
    for (int step = 0; step < 2; ++step) {
      backward(loss_of(params, r, step));
      reducer.finish_backward();
      for (const auto& [name, p] : params) {
        grads[static_cast<size_t>(r)].push_back(p.grad().to_vector<float>());
        p.set_grad(Tensor());  // zero_grad
      }
    }
    launched[static_cast<size_t>(r)] = reducer.buckets_launched();
  };
  std::thread other([&] {
    TcpStore store(test::store_options(1, 2, store0.port()));
    rank(store);
  });
  rank(store0);
  other.join();
  CHECK(buckets == std::vector<int64_t>{2, 2});
  CHECK(launched == std::vector<int64_t>{4, 4});  // every bucket, every step
  const std::vector<int64_t> sizes = {12, 4, 8};
  for (int step = 0; step < 2; ++step)
    for (size_t p = 0; p < 3; ++p) {
      CAPTURE(step);
      CAPTURE(p);
      // ((1 + i + step) + (2 (1 + i) + step)) / 2 = 1.5 (1 + i) + step
      std::vector<float> expected;
      for (int64_t i = 0; i < sizes[p]; ++i) expected.push_back(1.5f * static_cast<float>(1 + i) + static_cast<float>(step));
      for (size_t r = 0; r < 2; ++r) CHECK(grads[r][static_cast<size_t>(step) * 3 + p] == expected);
    }
}

TEST_CASE("a parameter without a gradient is named at the end of backward") {
  TcpStore store(test::store_options(0, 1, 0));
  StoreCommunicator comm(store);
  NamedTensors params = make_parameters();
  params.emplace_back("unused", zeros({2}));
  params.back().second.set_requires_grad(true);
  GradientReducer reducer(params, comm, small_buckets());
  backward(loss_of(NamedTensors(params.begin(), params.begin() + 3), 0, 0));
  CHECK(test::thrown_message<DistributedError>([&] { reducer.finish_backward(); }) ==
        "BucketTracker: backward ended with 1 parameter(s) that got no gradient: 'unused'; data parallelism needs "
        "every parameter's gradient on every rank at every step");
}
