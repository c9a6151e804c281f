// Layers against hand-computed f64 references (LayerNorm, attention, Mlp), gradcheck of the
// attention, the Mlp and a whole pre-norm Block (all parameters and the input), and the
// parameter fills against their distributions; a Block's stochastic depth against the drop
// decisions of the dropout stream.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "autograd/gradcheck.h"
#include "core/philox.h"
#include "nn/layers.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;

namespace {

// Row-major helpers for the f64 references.
using Mat = std::vector<double>;
Mat matmul_t(const Mat& x, int64_t n, int64_t d, const Mat& w, int64_t out, const Mat& b) {  // x·wᵀ + b
  Mat y(static_cast<size_t>(n * out));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double s = b.empty() ? 0 : b[static_cast<size_t>(o)];
      for (int64_t k = 0; k < d; ++k) s += x[static_cast<size_t>(i * d + k)] * w[static_cast<size_t>(o * d + k)];
      y[static_cast<size_t>(i * out + o)] = s;
    }
  return y;
}

template <class M>
std::vector<Tensor> with_params(const Tensor& x, const M& module) {
  std::vector<Tensor> inputs{x};
  for (const Tensor& p : module.parameters()) inputs.push_back(p);
  return inputs;
}

}  // namespace

TEST_CASE("trunc_normal_ redraws values outside the bounds: the truncated normal's moments, no mass on a bound") {
  // N(0, 1) cut to [-0.5, 1]: mean (phi(a) - phi(b)) / Z, variance 1 + (a phi(a) - b phi(b)) / Z - mean^2.
  const double a = -0.5, b = 1.0, n = 40000;
  const auto phi = [](double x) { return std::exp(-x * x / 2) / std::sqrt(2 * M_PI); };
  const auto cdf = [](double x) { return 0.5 * (1 + std::erf(x / M_SQRT2)); };
  const double z = cdf(b) - cdf(a), mean = (phi(a) - phi(b)) / z;
  const double std = std::sqrt(1 + (a * phi(a) - b * phi(b)) / z - mean * mean);
  Generator generator(11);
  const Tensor t = empty({static_cast<int64_t>(n)});
  nn::trunc_normal_(t, 1.0, generator, a, b);
  const std::vector<double> v = host_values(t);
  double m = 0, var = 0;
  for (double x : v) m += x / n;
  for (double x : v) var += (x - m) * (x - m) / n;
  CHECK(*std::min_element(v.begin(), v.end()) >= a);
  CHECK(*std::max_element(v.begin(), v.end()) <= b);
  // Clamping instead would put 16% of the draws exactly on 1 and 31% on -0.5.
  CHECK(std::count(v.begin(), v.end(), b) + std::count(v.begin(), v.end(), a) < 3);
  CHECK(std::abs(m - mean) < 5 * std / std::sqrt(n));
  CHECK(std::abs(std::sqrt(var) / std - 1) < 0.02);
  CHECK_THROWS_AS(nn::trunc_normal_(t, 0.02, generator, 1.0, 2.0), ValueError);  // 50 std out: no end
}

TEST_CASE("LayerNorm module: (x - mean) / sqrt(var + eps) * weight + bias") {
  nn::LayerNorm norm(5, Device::cpu());
  norm.weight.detach().copy_(from_vector<float>({1, 2, 3, 4, 5}, {5}));
  norm.bias.detach().copy_(from_vector<float>({0, 0.5, 0, -0.5, 1}, {5}));
  const Tensor x = test::random_tensor({3, 5}, 1);
  const auto xv = host_values(x), wv = host_values(norm.weight), bv = host_values(norm.bias);
  Mat expected(15);
  for (int i = 0; i < 3; ++i) {
    double mean = 0, var = 0;
    for (int j = 0; j < 5; ++j) mean += xv[static_cast<size_t>(i * 5 + j)] / 5;
    for (int j = 0; j < 5; ++j) var += std::pow(xv[static_cast<size_t>(i * 5 + j)] - mean, 2) / 5;
    for (int j = 0; j < 5; ++j)
      expected[static_cast<size_t>(i * 5 + j)] =
          (xv[static_cast<size_t>(i * 5 + j)] - mean) / std::sqrt(var + 1e-6) * wv[static_cast<size_t>(j)] + bv[static_cast<size_t>(j)];
  }
  CHECK(test::relative_error(host_values(norm.forward(x)), expected) < 1e-6);
}

TEST_CASE("attention forward equals the hand-computed softmax(QKᵀ/√d)·V projection") {
  Generator g(3);
  nn::Attention attn(8, 2, 0.0, 0.0, Device::cpu(), g);
  attn.eval();
  attn.to(Device::cpu(), DType::f64);
  for (const Tensor& p : attn.parameters()) p.detach().copy_(test::random_tensor(p.shape(), 7 + static_cast<uint64_t>(p.numel()), -0.5, 0.5, DType::f64));
  const int64_t batch = 2, tokens = 5, dim = 8, heads = 2, hd = 4;
  const Tensor x = test::random_tensor({batch, tokens, dim}, 2, -1, 1, DType::f64);
  const Mat qkv = matmul_t(host_values(x), batch * tokens, dim, host_values(attn.qkv->weight), 3 * dim, host_values(attn.qkv->bias));
  Mat merged(static_cast<size_t>(batch * tokens * dim));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < tokens; ++i) {
        // qkv row layout: [3, heads, hd] (timm's reshape(B, N, 3, H, hd))
        auto at = [&](int64_t which, int64_t token, int64_t c) {
          return qkv[static_cast<size_t>((b * tokens + token) * 3 * dim + which * dim + h * hd + c)];
        };
        std::vector<double> scores(static_cast<size_t>(tokens));
        double max = -1e300, total = 0;
        for (int64_t j = 0; j < tokens; ++j) {
          double s = 0;
          for (int64_t c = 0; c < hd; ++c) s += at(0, i, c) * at(1, j, c);
          scores[static_cast<size_t>(j)] = s / std::sqrt(static_cast<double>(hd));
          max = std::max(max, scores[static_cast<size_t>(j)]);
        }
        for (double& s : scores) total += (s = std::exp(s - max));
        for (int64_t c = 0; c < hd; ++c) {
          double v = 0;
          for (int64_t j = 0; j < tokens; ++j) v += scores[static_cast<size_t>(j)] / total * at(2, j, c);
          merged[static_cast<size_t>((b * tokens + i) * dim + h * hd + c)] = v;
        }
      }
  const Mat expected = matmul_t(merged, batch * tokens, dim, host_values(attn.proj->weight), dim, host_values(attn.proj->bias));
  CHECK(test::relative_error(host_values(attn.forward(x)), expected) < 1e-12);
}

TEST_CASE("Mlp forward equals fc2(gelu(fc1(x)))") {
  Generator g(4);
  nn::Mlp mlp(6, 10, 0.0, Device::cpu(), g);
  mlp.to(Device::cpu(), DType::f64);
  const Tensor x = test::random_tensor({7, 6}, 3, -1, 1, DType::f64);
  Mat h = matmul_t(host_values(x), 7, 6, host_values(mlp.fc1->weight), 10, host_values(mlp.fc1->bias));
  for (double& v : h) v = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
  const Mat expected = matmul_t(h, 7, 10, host_values(mlp.fc2->weight), 6, host_values(mlp.fc2->bias));
  CHECK(test::relative_error(host_values(mlp.forward(x)), expected) < 1e-12);
}

TEST_CASE("gradcheck: attention, Mlp and a pre-norm Block with respect to the input and every parameter") {
  Generator g(5);
  auto scaled_params = [](nn::Module& m, uint64_t seed) {
    m.to(Device::cpu(), DType::f64);
    for (const Tensor& p : m.parameters())
      p.detach().copy_(test::random_tensor(p.shape(), seed++, -0.6, 0.6, DType::f64));
  };
  Tensor x = test::random_tensor({2, 4, 8}, 6, -1, 1, DType::f64);
  x.set_requires_grad(true);
  nn::Attention attn(8, 2, 0.0, 0.0, Device::cpu(), g);
  scaled_params(attn, 100);
  const auto a = gradcheck([&](const std::vector<Tensor>& in) { return attn.forward(in[0]); }, with_params(x, attn));
  CHECK_MESSAGE(a.ok, a.message);
  nn::Mlp mlp(8, 12, 0.0, Device::cpu(), g);
  scaled_params(mlp, 200);
  const auto m = gradcheck([&](const std::vector<Tensor>& in) { return mlp.forward(in[0]); }, with_params(x, mlp));
  CHECK_MESSAGE(m.ok, m.message);
  nn::Block block(8, 2, 2.0, 0.0, Device::cpu(), g);
  scaled_params(block, 300);
  const auto b = gradcheck([&](const std::vector<Tensor>& in) { return block.forward(in[0]); }, with_params(x, block));
  CHECK_MESSAGE(b.ok, b.message);
}

TEST_CASE("Block drop path: each sample's branches are kept iff their Philox uniforms are >= rate, scaled by 1/(1-rate)") {
  constexpr int64_t B = 64, T = 3, D = 8;
  constexpr double rate = 0.5;  // kept branches are scaled by 1 / (1 - rate) = 2
  Generator g(7);
  nn::Block block(D, 2, 2.0, 0.0, Device::cpu(), g);
  block.to(Device::cpu(), DType::f64);
  block.set_drop_path_rate(rate);
  const Tensor x = test::random_tensor({B, T, D}, 8, -1, 1, DType::f64);
  Generator& dropout = nn::dropout_generator();
  dropout.manual_seed(99);
  const Tensor y = block.forward(x);
  CHECK(dropout.offset() == 2 * B / 4);  // one uniform per sample and branch
  // The reference from the branches themselves (no dropout inside them): the attention branch
  // draws uniforms 0..B-1 from block 0, the MLP branch from block B / 4.
  block.eval();
  const Tensor attn = block.attn->forward(block.norm1->forward(x));
  const auto xv = host_values(x), av = host_values(attn), yv = host_values(y);
  Mat h(xv.size());
  int both_dropped = 0;
  std::vector<double> mlp_scale(B);
  auto scale = [&](uint64_t first_block, size_t b) { return philox::uniform_element(99, first_block, b) >= rate ? 2.0 : 0.0; };
  for (size_t b = 0; b < B; ++b) {
    const double ka = scale(0, b);
    mlp_scale[b] = scale(B / 4, b);
    both_dropped += ka == 0 && mlp_scale[b] == 0;
    for (size_t i = b * T * D; i < (b + 1) * T * D; ++i) h[i] = xv[i] + ka * av[i];
  }
  const Tensor hidden = from_vector(h, {B, T, D});
  const auto mv = host_values(block.mlp->forward(block.norm2->forward(hidden)));
  Mat expected(h.size());
  for (size_t i = 0; i < h.size(); ++i) expected[i] = h[i] + mlp_scale[i / (T * D)] * mv[i];
  CHECK(test::relative_error(yv, expected) < 1e-12);
  CHECK(both_dropped > 0);  // the check covers every combination of kept and dropped branches
  (void)block.forward(x);  // in eval mode: no draws
  CHECK(dropout.offset() == 2 * B / 4);
  CHECK_THROWS_WITH_AS(block.set_drop_path_rate(1), "Block: expected a drop-path rate in [0, 1), got 1", ValueError);
}
