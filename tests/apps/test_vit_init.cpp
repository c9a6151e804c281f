// The ViT's initial parameters against timm's VisionTransformer.init_weights (issue 11): per
// parameter kind the distribution (uniform bound, normal std, zeros/ones) with tolerances set
// from each tensor's size, and that the draws are neither quantized nor shared with other
// consumers of the seed.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "apps/vit/vit.h"
#include "tests/support/op_checks.h"

using namespace tg;

namespace {

struct Moments {
  double mean = 0, std = 0, max_abs = 0;
  size_t distinct = 0;
  int64_t n = 0;
};

Moments moments(const Tensor& t) {
  const std::vector<double> v = test::host_values(t);
  Moments m;
  m.n = static_cast<int64_t>(v.size());
  for (double x : v) m.mean += x / static_cast<double>(m.n);
  for (double x : v) {
    m.std += (x - m.mean) * (x - m.mean) / static_cast<double>(m.n);
    m.max_abs = std::max(m.max_abs, std::abs(x));
  }
  m.std = std::sqrt(m.std);
  m.distinct = std::set<double>(v.begin(), v.end()).size();
  return m;
}

// A sample's mean within 5 standard errors of 0 and its std within 5 standard errors of `std`
// (the standard error of a sample std is std * sqrt((kurtosis - 1) / 4n)).
void check_moments(const Moments& m, double std, double kurtosis) {
  const double n = static_cast<double>(m.n);
  CHECK(std::abs(m.mean) < 5 * std / std::sqrt(n));
  CHECK(std::abs(m.std / std - 1) < 5 * std::sqrt((kurtosis - 1) / (4 * n)));
}

vit::VitConfig vit_small_4_32() {
  vit::VitConfig c = vit::preset("vit-small");
  c.depth = 2;
  return c;
}

}  // namespace

TEST_CASE("ViT initialization follows timm per parameter kind (vit-small/4 at 32 px)") {
  const vit::VitConfig c = vit_small_4_32();
  const vit::VisionTransformer model(c, Device::cpu(), 3);
  const std::map<std::string, Tensor> p = [&] {
    std::map<std::string, Tensor> out;
    for (const auto& [name, t] : model.named_parameters()) out[name] = t;
    return out;
  }();
  const double normal_kurtosis = 3, uniform_kurtosis = 1.8;

  // The patch embedding is timm's Conv2d left at PyTorch's default, kaiming_uniform(a = sqrt(5)):
  // weight and bias U(±1/sqrt(fan_in)), fan_in = 3·4·4 = 48, so std 1/sqrt(3·48) = 0.083.
  const double bound = 1 / std::sqrt(48.0);
  for (const char* name : {"patch_embed.proj.weight", "patch_embed.proj.bias"}) {
    CAPTURE(name);
    const Moments m = moments(p.at(name));
    check_moments(m, bound / std::sqrt(3.0), uniform_kurtosis);
    CHECK(m.max_abs <= bound);
    CHECK(m.max_abs > 0.97 * bound);
  }
  // cls_token ~ N(0, 1e-6), every value its own (no rounding to a coarse grid).
  const Moments cls = moments(p.at("cls_token"));
  check_moments(cls, 1e-6, normal_kurtosis);
  CHECK(cls.distinct == static_cast<size_t>(c.dim));
  // pos_embed and every Linear weight (qkv, proj, fc1, fc2, head) ~ trunc_normal(0.02) with
  // timm's absolute bounds ±2 (100 std: nothing cut); Linear biases zero; LayerNorms ones/zeros.
  std::vector<std::string> normals = {"pos_embed", "head.weight"};
  for (const char* layer : {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"})
    for (int64_t b = 0; b < c.depth; ++b) normals.push_back("blocks." + std::to_string(b) + "." + layer + ".weight");
  for (const std::string& name : normals) {
    CAPTURE(name);
    const Moments m = moments(p.at(name));
    check_moments(m, 0.02, normal_kurtosis);
    CHECK(m.max_abs < 6 * 0.02);
    CHECK(m.distinct > static_cast<size_t>(m.n) * 99 / 100);
  }
  int64_t zeros = 0, ones = 0;
  for (const auto& [name, t] : p) {
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool norm_weight = name.find("norm") != std::string::npos && !bias;
    if (name.rfind("patch_embed", 0) == 0 || !(bias || norm_weight)) continue;
    CAPTURE(name);
    const std::vector<double> v = test::host_values(t);
    CHECK(std::all_of(v.begin(), v.end(), [&](double x) { return x == (norm_weight ? 1.0 : 0.0); }));
    (norm_weight ? ones : zeros) += 1;
  }
  CHECK(ones == 2 * c.depth + 1);   // norm1, norm2 per block and the final norm
  CHECK(zeros == 6 * c.depth + 2);  // 4 Linear and 2 norm biases per block, norm, head
}

TEST_CASE("ViT initialization draws from a stream of its own, not the first numbers of Philox(seed)") {
  // Augmentation (Philox(seed, sample, epoch)) and dropout draw from key `seed` at block 0 on:
  // initial weights from the same numbers would be tied to the first epoch's crops and flips.
  const vit::VitConfig c = vit_small_4_32();
  const vit::VisionTransformer model(c, Device::cpu(), 5);
  Generator plain(5), init(stream_seed(5, kInitStream));
  const double bound = 1 / std::sqrt(48.0);
  const Tensor shared = rand(model.patch_weight.shape(), DType::f32, Device::cpu(), plain, -bound, bound);
  const Tensor own = rand(model.patch_weight.shape(), DType::f32, Device::cpu(), init, -bound, bound);
  CHECK(test::host_values(model.patch_weight) == test::host_values(own));
  CHECK(test::host_values(model.patch_weight) != test::host_values(shared));
  CHECK(stream_seed(5, kInitStream) != stream_seed(5, kDropoutStream));
  CHECK(stream_seed(5, kInitStream) != stream_seed(6, kInitStream));
}
