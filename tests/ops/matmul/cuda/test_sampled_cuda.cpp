// Sampled strategies on CUDA: the same sample as on the CPU for the same seed (so the same
// estimate up to GEMM rounding), unbiasedness on the device, and the proxy update.
#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "ops/matmul/linear.h"
#include "ops/matmul/matmul.h"
#include "ops/matmul/sampled.h"
#include "tests/support/op_checks.h"

using namespace tg;

namespace {
StrategyConfig sampled(const std::string& name, double ratio, uint64_t seed) {
  StrategyConfig c;
  c.kind = parse_strategy(name);
  c.ratio = ratio;
  c.seed = seed;
  return c;
}
}  // namespace

TEST_CASE("linear and attention matmul with WTA-CRS: CUDA gives the CPU's estimate for the same seed") {
  for (const std::string name : {"wta-crs", "crs", "topk"}) {
    CAPTURE(name);
    Tensor x = test::random_tensor({4, 197, 64}, 1);
    x.set_requires_grad(true);
    Tensor w = test::random_tensor({96, 64}, 2);
    w.set_requires_grad(true);
    // Each run builds a fresh strategy with the same seed and node id, so both devices draw alike.
    test::check_cuda_matches_cpu(
        [&](const std::vector<Tensor>& in) {
          auto s = make_strategy(sampled(name, 0.3, 5), 1);
          return linear(in[0], in[1], Tensor(), s.get());
        },
        {x, w}, 1e-5);
    Tensor q = test::random_tensor({2, 3, 65, 16}, 3), k = test::random_tensor({2, 3, 65, 16}, 4);
    q.set_requires_grad(true);
    k.set_requires_grad(true);
    test::check_cuda_matches_cpu(
        [&](const std::vector<Tensor>& in) {
          auto s = make_strategy(sampled(name, 0.3, 6), 2);
          return matmul(in[0], in[1], false, true, s.get());
        },
        {q, k}, 1e-5);
  }
}

TEST_CASE("the position-EMA proxy updates on the device like on the CPU") {
  std::vector<std::vector<float>> proxies;
  for (Device device : {Device::cpu(), Device::cuda(0)}) {
    StrategyConfig c = sampled("wta-crs", 0.3, 9);
    c.proxy = ProxyKind::position_ema;
    SamplingStrategy strategy(SamplingVariant::wta_crs, c, 4);
    Tensor w = test::random_tensor({8, 32}, 5).to(device);
    w.set_requires_grad(true);
    for (int step = 0; step < 3; ++step) {
      const Tensor x = test::random_tensor({6, 50, 32}, 10 + static_cast<uint64_t>(step)).to(device);
      backward(linear(x, w, Tensor(), &strategy), test::random_tensor({6, 50, 8}, 20 + static_cast<uint64_t>(step)).to(device));
    }
    proxies.push_back(strategy.proxy().to(Device::cpu()).to_vector<float>());
  }
  CHECK(test::relative_error(proxies[1], proxies[0]) < 1e-5);
}
