// Mixup / CutMix: the per-batch choice (Beta draws by Marsaglia-Tsang gammas from Philox), the
// image mixing (elementwise ops, a strided box copy) and the mixed-target loss.
#include "nn/mixup.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/philox.h"
#include "core/rng.h"
#include "ops/elementwise.h"
#include "ops/loss.h"
#include "ops/shape_ops.h"

namespace tg::nn {

namespace {

// Uniforms in (0, 1) from Philox(key, block = 0, 1, ..., subsequence), four words per block.
class UniformStream {
 public:
  UniformStream(uint64_t key, uint64_t subsequence) : key_(key), subsequence_(subsequence) {}
  double next() {
    if (lane_ == 4) {
      block_ = philox::generate(key_, index_++, subsequence_);
      lane_ = 0;
    }
    return (static_cast<double>(block_.w[lane_++]) + 0.5) * 0x1p-32;
  }
  double normal() {  // Box-Muller, one of the pair
    const double u1 = next(), u2 = next();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t key_, subsequence_, index_ = 0;
  philox::Block block_{};
  int lane_ = 4;
};

// Gamma(alpha, 1): Marsaglia and Tsang (2000) for alpha >= 1; Gamma(alpha + 1) * U^(1/alpha) below.
double sample_gamma(double alpha, UniformStream& draws) {
  if (alpha < 1) return sample_gamma(alpha + 1, draws) * std::pow(draws.next(), 1.0 / alpha);
  const double d = alpha - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double x = draws.normal(), v = std::pow(1 + c * x, 3);
    if (v <= 0) continue;
    if (std::log(draws.next()) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}

double sample_beta(double alpha, UniformStream& draws) {
  const double x = sample_gamma(alpha, draws), y = sample_gamma(alpha, draws);
  return x + y > 0 ? x / (x + y) : 0.5;  // both underflow only for a vanishing alpha
}

void check_probability(const char* name, double p) {
  TG_CHECK(p >= 0 && p <= 1, ValueError, "Mixup: expected ", name, " in [0, 1], got ", p);
}

}  // namespace

Mixup::Mixup(const MixupConfig& config, uint64_t seed) : config_(config), key_(stream_seed(seed, kMixupStream)) {
  TG_CHECK(std::isfinite(config.mixup_alpha) && config.mixup_alpha >= 0 && std::isfinite(config.cutmix_alpha) &&
               config.cutmix_alpha >= 0,
           ValueError, "Mixup: expected alphas >= 0 (0: off), got mixup ", config.mixup_alpha, " and cutmix ",
           config.cutmix_alpha);
  check_probability("prob", config.prob);
  check_probability("switch_prob", config.switch_prob);
}

MixChoice Mixup::choose(uint64_t step, int64_t height, int64_t width) const {
  MixChoice choice;
  UniformStream draws(key_, step);
  if (!config_.enabled() || !(draws.next() < config_.prob)) return choice;
  const double pick = draws.next();
  choice.mixed = true;
  choice.cutmix = config_.mixup_alpha == 0 || (config_.cutmix_alpha > 0 && pick < config_.switch_prob);
  const double lam = sample_beta(choice.cutmix ? config_.cutmix_alpha : config_.mixup_alpha, draws);
  if (!choice.cutmix) {
    choice.lam = lam;
    return choice;
  }
  // timm's rand_bbox: a cut of sides int(side * sqrt(1 - lam)) around a uniform centre, clipped.
  const double ratio = std::sqrt(1 - lam);
  const auto cut_h = static_cast<int64_t>(static_cast<double>(height) * ratio);
  const auto cut_w = static_cast<int64_t>(static_cast<double>(width) * ratio);
  const int64_t cy = std::min(static_cast<int64_t>(draws.next() * static_cast<double>(height)), height - 1);
  const int64_t cx = std::min(static_cast<int64_t>(draws.next() * static_cast<double>(width)), width - 1);
  const int64_t y0 = std::clamp<int64_t>(cy - cut_h / 2, 0, height), y1 = std::clamp<int64_t>(cy + cut_h / 2, 0, height);
  const int64_t x0 = std::clamp<int64_t>(cx - cut_w / 2, 0, width), x1 = std::clamp<int64_t>(cx + cut_w / 2, 0, width);
  choice.top = y0;
  choice.left = x0;
  choice.height = y1 - y0;
  choice.width = x1 - x0;
  choice.lam = 1 - static_cast<double>(choice.height * choice.width) / static_cast<double>(height * width);
  return choice;
}

Tensor Mixup::flip_rows(const Tensor& x) {
  const int64_t n = x.size(0);
  if (!reversed_.defined() || reversed_.numel() != n || reversed_.device() != x.device()) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = n - 1 - i;
    reversed_ = from_vector(order, {n}, x.device());
  }
  return index_select(x, 0, reversed_);
}

Tensor Mixup::mix_images(const Tensor& images, const MixChoice& choice) {
  TG_CHECK(images.dim() == 4, ShapeError, "Mixup: expected images [B, C, H, W], got ", images.shape().str());
  if (!choice.mixed) return images;
  TG_CHECK(choice.top >= 0 && choice.left >= 0 && choice.top + choice.height <= images.size(2) &&
               choice.left + choice.width <= images.size(3),
           ShapeError, "Mixup: the cutmix box at (", choice.top, ", ", choice.left, ") of ", choice.height, "x",
           choice.width, " is outside images ", images.shape().str());
  NoGradGuard no_grad;
  const Tensor flipped = flip_rows(images);
  if (!choice.cutmix) return add(mul(images, choice.lam), mul(flipped, 1 - choice.lam));
  const Tensor out = images.clone();
  auto box = [&](const Tensor& t) { return t.raw_narrow(2, choice.top, choice.height).raw_narrow(3, choice.left, choice.width); };
  box(out).copy_(box(flipped));
  return out;
}

Tensor Mixup::loss(const Tensor& logits, const Tensor& labels, const MixChoice& choice, double label_smoothing) {
  if (!choice.mixed) return cross_entropy(logits, labels, label_smoothing);
  const Tensor partner = [&] {
    NoGradGuard no_grad;
    return flip_rows(labels);
  }();
  return add(mul(cross_entropy(logits, labels, label_smoothing), choice.lam),
             mul(cross_entropy(logits, partner, label_smoothing), 1 - choice.lam));
}

}  // namespace tg::nn
