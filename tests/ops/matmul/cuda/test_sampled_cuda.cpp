// Sampled strategies on CUDA: the same sample as on the CPU for the same seed (so the same
// estimate up to GEMM rounding), unbiasedness on the device (the mean over seeds of a linear's
// dW and of both attention operand gradients, on heavy-tailed rows with winners, within a
// z-bound of the exact gradient), the proxy update, and the side stream's results equal to the
// current stream's.
#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "ops/matmul/linear.h"
#include "ops/matmul/matmul.h"
#include "ops/matmul/sampled.h"
#include "tests/support/estimator_stats.h"
#include "tests/support/op_checks.h"

using namespace tg;

namespace {
const Device kCuda = Device::cuda(0);

StrategyConfig sampled(const std::string& name, double ratio, uint64_t seed) {
  StrategyConfig c;
  c.kind = parse_strategy(name);
  c.ratio = ratio;
  c.seed = seed;
  return c;
}

// Whether the sampler gives item `rows` [K, D] (CPU) winners at ratio 0.3 (scores ||x||).
bool has_winners(const Tensor& rows) {
  const std::vector<float> scores = row_norms(rows.raw_unsqueeze(0)).to_vector<float>();
  return !plan_sample(scores, {sample_budget(rows.size(0), 0.3, 10), 0.05}).winners.empty();
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
          auto for_q = make_strategy(sampled(name, 0.3, 6), 2), for_k = make_strategy(sampled(name, 0.3, 6), 3);
          return matmul(in[0], in[1], false, true, for_q.get(), for_k.get());
        },
        {q, k}, 1e-5);
  }
}

TEST_CASE("the position-EMA proxy updates on the device like on the CPU") {
  std::vector<std::vector<float>> proxies;
  for (Device device : {Device::cpu(), Device::cuda(0)}) {
    StrategyConfig c = sampled("wta-crs", 0.3, 9);
    c.proxy = ProxyKind::position_ema;
    SamplingStrategy strategy(c, 4);
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

TEST_CASE("sampled strategies are unbiased on the device: mean over seeds of dW and of both attention gradients") {
  const int trials = 1000;
  // A linear's dW over log-normal rows (winners for wta-crs).
  const Tensor x = test::lognormal_rows(256, 12, 1.5, 31);
  REQUIRE(has_winners(x));
  const Tensor x_cuda = x.to(kCuda), g = test::random_tensor({256, 6}, 32).to(kCuda);
  const auto weight_grad = [&](BackwardStrategy* strategy) {
    Tensor w = test::random_tensor({6, 12}, 33).to(kCuda);
    w.set_requires_grad(true);
    backward(linear(x_cuda, w, Tensor(), strategy), g);
    return test::host_values(w.grad());
  };
  // Attention R = A·B per item, both operands heavy-tailed: dB samples A's rows, dA Bᵀ's.
  const int64_t batch = 3, m = 40, d = 8, n = 50;
  const Tensor a = test::lognormal_rows(batch * m, d, 1.5, 34).raw_reshape({batch, m, d});
  const Tensor bt = test::lognormal_rows(batch * n, d, 1.5, 35).raw_reshape({batch, n, d});
  for (int64_t i = 0; i < batch; ++i) {
    REQUIRE(has_winners(a.raw_select(0, i)));
    REQUIRE(has_winners(bt.raw_select(0, i)));
  }
  const Tensor a_cuda = a.to(kCuda), b_cuda = bt.raw_transpose(1, 2).raw_contiguous().to(kCuda);
  const Tensor gr = test::random_tensor({batch, m, n}, 36).to(kCuda);
  const auto attention_grads = [&](BackwardStrategy* for_a, BackwardStrategy* for_b) {
    Tensor aa = a_cuda.clone(), bb = b_cuda.clone();
    aa.set_requires_grad(true);
    bb.set_requires_grad(true);
    backward(matmul(aa, bb, false, false, for_a, for_b), gr);
    auto ga = test::host_values(aa.grad()), gb = test::host_values(bb.grad());
    ga.insert(ga.end(), gb.begin(), gb.end());
    return ga;
  };
  for (const std::string name : {"wta-crs", "crs"}) {
    CAPTURE(name);
    const auto exact_dw = weight_grad(nullptr);
    const test::Moments dw = test::estimate_moments(exact_dw, trials, [&](uint64_t seed) {
      auto s = make_strategy(sampled(name, 0.3, seed), 0);
      return weight_grad(s.get());
    });
    CHECK(test::max_z(dw, exact_dw, trials) < 4.5);
    const auto exact_att = attention_grads(nullptr, nullptr);
    const test::Moments att = test::estimate_moments(exact_att, trials, [&](uint64_t seed) {
      auto for_a = make_strategy(sampled(name, 0.3, seed), 0), for_b = make_strategy(sampled(name, 0.3, seed), 1);
      return attention_grads(for_a.get(), for_b.get());
    });
    CHECK(test::max_z(att, exact_att, trials) < 4.5);
  }
}

TEST_CASE("the sampler on the side stream gives the current stream's bits: weight gradients and the proxy over steps") {
  // A ViT-B-like linear item (one item of 12,608 rows: the one-launch 1,024-thread path) and a
  // ViT-S-like one; three steps each, so that the proxy and the step counter carry over.
  struct Case {
    int64_t batch, tokens, in, out;
  };
  for (const Case c : {Case{64, 197, 48, 24}, Case{128, 65, 40, 16}}) {
    CAPTURE(c.batch);
    std::vector<std::vector<float>> gradients, proxies;
    for (const bool side : {false, true}) {
      set_cuda_sampler_side_stream(side);
      StrategyConfig config = sampled("wta-crs", 0.3, 11);
      config.proxy = ProxyKind::position_ema;
      SamplingStrategy strategy(config, 7);
      Tensor w = test::random_tensor({c.out, c.in}, 30).to(kCuda);
      w.set_requires_grad(true);
      for (uint64_t step = 0; step < 3; ++step) {
        const Tensor x = test::random_tensor({c.batch, c.tokens, c.in}, 40 + step).to(kCuda);
        const Tensor g = test::random_tensor({c.batch, c.tokens, c.out}, 50 + step).to(kCuda);
        backward(linear(x, w, Tensor(), &strategy), g);
      }
      gradients.push_back(w.grad().to(Device::cpu()).to_vector<float>());
      proxies.push_back(strategy.proxy().to(Device::cpu()).to_vector<float>());
      CHECK(strategy.state_dict().at("step").to_vector<int64_t>() == std::vector<int64_t>{3});
    }
    set_cuda_sampler_side_stream(true);
    CHECK(gradients[1] == gradients[0]);
    CHECK(proxies[1] == proxies[0]);
  }
}
