// Mixup / CutMix: lam against the moments of Beta(alpha, alpha), the mixing and switching
// probabilities, timm's cutmix box and its lam correction, the mixed images against host loops,
// the loss against an f64 soft-target cross entropy with timm's mixed smoothed targets, gradcheck,
// determinism per (seed, step), and the errors.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "nn/mixup.h"
#include "ops/loss.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::random_tensor;

namespace {

nn::MixupConfig config(double mixup, double cutmix, double prob = 1, double switch_prob = 0.5) {
  nn::MixupConfig c;
  c.mixup_alpha = mixup;
  c.cutmix_alpha = cutmix;
  c.prob = prob;
  c.switch_prob = switch_prob;
  return c;
}

constexpr int kDraws = 4000;

}  // namespace

TEST_CASE("mixup's lam has Beta(alpha, alpha)'s mean 1/2 and variance 1/(4 (2 alpha + 1))") {
  for (double alpha : {0.2, 1.0, 4.0}) {
    CAPTURE(alpha);
    const nn::Mixup mixup(config(alpha, 0), 11);
    double sum = 0, squares = 0;
    int below_quarter = 0;
    for (int step = 0; step < kDraws; ++step) {
      const nn::MixChoice c = mixup.choose(static_cast<uint64_t>(step), 32, 32);
      REQUIRE((c.mixed && !c.cutmix && c.lam >= 0 && c.lam <= 1));
      sum += c.lam;
      squares += (c.lam - 0.5) * (c.lam - 0.5);
      below_quarter += c.lam < 0.25;
    }
    const double variance = 1 / (4 * (2 * alpha + 1));
    CHECK(std::abs(sum / kDraws - 0.5) < 4 * std::sqrt(variance / kDraws));
    CHECK(std::abs(squares / kDraws / variance - 1) < 0.1);
    if (alpha == 1.0) CHECK(std::abs(below_quarter / double(kDraws) - 0.25) < 4 * std::sqrt(0.25 * 0.75 / kDraws));
  }
}

TEST_CASE("a batch is mixed with probability prob, by cutmix with probability switch_prob") {
  const nn::Mixup mixup(config(0.8, 1.0, 0.6, 0.3), 12);
  int mixed = 0, cutmix = 0;
  for (int step = 0; step < kDraws; ++step) {
    const nn::MixChoice c = mixup.choose(static_cast<uint64_t>(step), 32, 32);
    mixed += c.mixed;
    cutmix += c.cutmix;
    if (!c.mixed) CHECK(c.lam == 1);
  }
  CHECK(std::abs(mixed / double(kDraws) - 0.6) < 4 * std::sqrt(0.6 * 0.4 / kDraws));
  CHECK(std::abs(cutmix / double(mixed) - 0.3) < 4 * std::sqrt(0.3 * 0.7 / mixed));
  // One method only: always that one.
  CHECK(nn::Mixup(config(0, 1.0), 1).choose(5, 32, 32).cutmix);
  CHECK(!nn::Mixup(config(1.0, 0), 1).choose(5, 32, 32).cutmix);
  CHECK(!nn::Mixup(config(0, 0), 1).choose(5, 32, 32).mixed);
}

TEST_CASE("cutmix's box lies in the image, its sides share one ratio to the image's, lam is the kept area") {
  const nn::Mixup mixup(config(0, 1.0), 13);
  int clipped = 0;
  for (int step = 0; step < 500; ++step) {
    const nn::MixChoice c = mixup.choose(static_cast<uint64_t>(step), 24, 40);
    REQUIRE(c.cutmix);
    CHECK((c.top >= 0 && c.left >= 0 && c.height >= 0 && c.width >= 0 && c.top + c.height <= 24 &&
           c.left + c.width <= 40));
    CHECK(c.lam == doctest::Approx(1 - double(c.height * c.width) / (24 * 40)).epsilon(1e-12));
    const bool clip = c.top == 0 || c.left == 0 || c.top + c.height == 24 || c.left + c.width == 40;
    clipped += clip;
    // Unclipped, the sides are 2 * (int(side * r) // 2) for one ratio r = sqrt(1 - lam0).
    if (!clip) CHECK((c.height % 2 == 0 && c.width % 2 == 0 && std::abs(c.height / 24.0 - c.width / 40.0) <= 2 / 24.0));
  }
  CHECK(clipped > 0);  // centres near the border get clipped boxes
}

TEST_CASE("the choice is a pure function of (seed, step)") {
  const nn::Mixup a(config(0.8, 1.0), 21), b(config(0.8, 1.0), 21), other(config(0.8, 1.0), 22);
  int same_as_other = 0;
  for (uint64_t step = 0; step < 50; ++step) {
    const nn::MixChoice x = a.choose(step, 32, 32), y = b.choose(step, 32, 32);
    CHECK((x.lam == y.lam && x.cutmix == y.cutmix && x.top == y.top && x.left == y.left && x.height == y.height));
    same_as_other += other.choose(step, 32, 32).lam == x.lam;
  }
  CHECK(same_as_other == 0);
}

TEST_CASE("mix_images: mixup blends image b with image B-1-b; cutmix pastes the box of image B-1-b") {
  const int64_t B = 5, C = 2, H = 6, W = 7;
  const Tensor images = random_tensor({B, C, H, W}, 30);
  const auto x = images.to_vector<float>();
  auto at = [&](int64_t b, int64_t c, int64_t y, int64_t w) { return x[static_cast<size_t>(((b * C + c) * H + y) * W + w)]; };
  nn::Mixup mixup(config(1.0, 1.0), 1);
  nn::MixChoice blend;
  blend.mixed = true;
  blend.lam = 0.3;
  const auto mixed = mixup.mix_images(images, blend).to_vector<float>();
  nn::MixChoice box;
  box.mixed = box.cutmix = true;
  box.top = 1, box.left = 2, box.height = 3, box.width = 4;
  const auto pasted = mixup.mix_images(images, box).to_vector<float>();
  int64_t bad_mix = 0, bad_box = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t w = 0; w < W; ++w) {
          const size_t i = static_cast<size_t>(((b * C + c) * H + y) * W + w);
          const double expected = 0.3 * at(b, c, y, w) + 0.7 * at(B - 1 - b, c, y, w);
          bad_mix += std::abs(mixed[i] - expected) > 1e-6;
          const bool inside = y >= 1 && y < 4 && w >= 2 && w < 6;
          bad_box += pasted[i] != (inside ? at(B - 1 - b, c, y, w) : at(b, c, y, w));
        }
  CHECK(bad_mix == 0);
  CHECK(bad_box == 0);
  CHECK(images.to_vector<float>() == x);  // the input is left as it was
  CHECK(mixup.mix_images(images, nn::MixChoice{}).same(images));
}

TEST_CASE("the mixed loss is the cross entropy against timm's mixed smoothed soft targets (f64 reference)") {
  const int64_t N = 6, K = 5;
  const double lam = 0.35, eps = 0.1;
  const Tensor logits = random_tensor({N, K}, 40, -3, 3, DType::f64);
  const std::vector<int64_t> y = {0, 3, 4, 1, 1, 2};
  const Tensor labels = from_vector(y, {N});
  nn::Mixup mixup(config(1.0, 0), 1);
  nn::MixChoice choice;
  choice.mixed = true;
  choice.lam = lam;
  const auto z = logits.to_vector<double>();
  double expected = 0;
  for (int64_t n = 0; n < N; ++n) {
    double max = -1e300, sum = 0;
    for (int64_t k = 0; k < K; ++k) max = std::max(max, z[static_cast<size_t>(n * K + k)]);
    for (int64_t k = 0; k < K; ++k) sum += std::exp(z[static_cast<size_t>(n * K + k)] - max);
    const double lse = max + std::log(sum);
    for (int64_t k = 0; k < K; ++k) {
      auto smooth = [&](int64_t label) { return (k == label ? 1 - eps : 0) + eps / K; };
      const double target = lam * smooth(y[static_cast<size_t>(n)]) + (1 - lam) * smooth(y[static_cast<size_t>(N - 1 - n)]);
      expected += -target * (z[static_cast<size_t>(n * K + k)] - lse) / N;
    }
  }
  CHECK(mixup.loss(logits, labels, choice, eps).item() == doctest::Approx(expected).epsilon(1e-12));
  CHECK(mixup.loss(logits, labels, nn::MixChoice{}, eps).item() == cross_entropy(logits, labels, eps).item());

  Tensor leaf = logits.clone();
  leaf.set_requires_grad(true);
  const auto r = gradcheck([&](const std::vector<Tensor>& in) { return mixup.loss(in[0], labels, choice, eps); }, {leaf});
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("Mixup errors") {
  CHECK_THROWS_WITH_AS(nn::Mixup(config(-1, 0), 0), "Mixup: expected alphas >= 0 (0: off), got mixup -1 and cutmix 0",
                       ValueError);
  CHECK_THROWS_WITH_AS(nn::Mixup(config(1, 0, 1.5), 0), "Mixup: expected prob in [0, 1], got 1.5", ValueError);
  CHECK_THROWS_WITH_AS(nn::Mixup(config(1, 1, 1, -0.1), 0), "Mixup: expected switch_prob in [0, 1], got -0.1",
                       ValueError);
  nn::Mixup mixup(config(1, 1), 0);
  nn::MixChoice box;
  box.mixed = box.cutmix = true;
  box.top = 4, box.height = 3, box.width = 1;
  CHECK_THROWS_WITH_AS(mixup.mix_images(zeros({2, 1, 6, 6}), box),
                       "Mixup: the cutmix box at (4, 0) of 3x1 is outside images [2, 1, 6, 6]", ShapeError);
  CHECK_THROWS_WITH_AS(mixup.mix_images(zeros({2, 6, 6}), box), "Mixup: expected images [B, C, H, W], got [2, 6, 6]",
                       ShapeError);
}
