// Optimizers against closed-form updates, clipping, the LR schedule, optimizer state round trip.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "autograd/engine.h"
#include "nn/optim.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tests/support/op_checks.h"

using namespace tg;
using namespace tg::nn;

namespace {
// A parameter with a fixed gradient sequence: grad at step t = g0 * (t + 1) (so moments change).
struct Fixture {
  Tensor param;
  std::vector<double> p0, g0;
  explicit Fixture(DType dtype = DType::f64, Device device = Device::cpu()) {
    p0 = {0.5, -1.0, 2.0, 0.0};
    g0 = {0.1, -0.3, 0.0, 2.0};
    param = from_vector(p0, {4}).to(dtype).to(device);
    param.set_requires_grad(true);
  }
  void set_grad(int t) const {
    std::vector<double> g = g0;
    for (double& v : g) v *= t + 1;
    param.set_grad(from_vector(g, {4}).to(param.dtype()).to(param.device()));
  }
};
}  // namespace

TEST_CASE("Adam and AdamW follow PyTorch's formulas for several steps") {
  for (bool decoupled : {false, true}) {
    CAPTURE(decoupled);
    Fixture f;
    AdamOptions o;
    o.lr = 0.01;
    o.weight_decay = 0.1;
    o.decoupled_weight_decay = decoupled;
    Adam adam({{"w", f.param, true}}, o);
    std::vector<double> p = f.p0, m(4, 0), v(4, 0);
    for (int t = 0; t < 5; ++t) {
      f.set_grad(t);
      adam.step();
      for (size_t i = 0; i < 4; ++i) {
        double g = f.g0[i] * (t + 1);
        if (decoupled) p[i] -= o.lr * o.weight_decay * p[i];
        else g += o.weight_decay * p[i];
        m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
        v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
        const double mhat = m[i] / (1 - std::pow(o.beta1, t + 1)), vhat = v[i] / (1 - std::pow(o.beta2, t + 1));
        p[i] -= o.lr * mhat / (std::sqrt(vhat) + o.eps);
      }
      const auto got = f.param.to_vector<double>();
      for (size_t i = 0; i < 4; ++i) CHECK(got[i] == doctest::Approx(p[i]).epsilon(1e-12));
    }
  }
}

TEST_CASE("SGD with momentum, dampening, Nesterov and weight decay follows PyTorch's formulas") {
  for (bool nesterov : {false, true}) {
    Fixture f;
    SgdOptions o;
    o.lr = 0.1;
    o.momentum = 0.9;
    o.weight_decay = 0.01;
    o.nesterov = nesterov;
    SGD sgd({{"w", f.param, true}}, o);
    std::vector<double> p = f.p0, buf(4, 0);
    for (int t = 0; t < 4; ++t) {
      f.set_grad(t);
      sgd.step();
      for (size_t i = 0; i < 4; ++i) {
        double g = f.g0[i] * (t + 1) + o.weight_decay * p[i];
        buf[i] = t == 0 ? g : o.momentum * buf[i] + g;
        g = nesterov ? g + o.momentum * buf[i] : buf[i];
        p[i] -= o.lr * g;
      }
      const auto got = f.param.to_vector<double>();
      for (size_t i = 0; i < 4; ++i) CHECK(got[i] == doctest::Approx(p[i]).epsilon(1e-12));
    }
  }
}

TEST_CASE("parameters flagged for no decay are not decayed; decay_specs picks them") {
  Tensor w = from_vector<double>({1, 2, 3, 4}, {2, 2}), b = from_vector<double>({1, 1}, {2});
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  const auto specs = decay_specs({{"fc.weight", w}, {"fc.bias", b}, {"pos_embed", w}}, {"pos_embed"});
  CHECK(specs[0].weight_decay);
  CHECK_FALSE(specs[1].weight_decay);
  CHECK_FALSE(specs[2].weight_decay);
  Adam adamw({specs[1]}, adamw_options(0.1, 0.5));
  b.set_grad(zeros({2}, DType::f64));
  adamw.step();
  CHECK(b.to_vector<double>() == std::vector<double>{1, 1});  // zero grad, no decay: unchanged
}

TEST_CASE("optimizer state round-trips for an exact resume") {
  Fixture a, b;
  Adam first({{"w", a.param, true}}, AdamOptions{});
  for (int t = 0; t < 3; ++t) {
    a.set_grad(t);
    first.step();
  }
  b.param.detach().copy_(a.param);
  Adam second({{"w", b.param, true}}, AdamOptions{});
  second.load_state_dict(first.state_dict());
  CHECK(second.step_count() == 3);
  a.set_grad(3);
  b.set_grad(3);
  first.step();
  second.step();
  CHECK(a.param.to_vector<double>() == b.param.to_vector<double>());
  CHECK_THROWS_WITH_AS(second.load_state_dict({}), "optimizer load_state_dict: missing key 'step'", ValueError);
}

TEST_CASE("the optimizer in backward: the same parameters as step(), bit for bit, and no gradient left") {
  // Two parameters in one graph, y = sum(w1 * x * w2 + w2): each is updated when backward has
  // completed its gradient, from that gradient alone.
  const Tensor x = from_vector<double>({0.3, -1.2, 2.0, 0.7}, {4});
  auto run = [&](bool in_backward, bool sgd) {
    Fixture a, b;
    b.param.detach().copy_(from_vector<double>({1.5, 0.25, -0.5, 1.0}, {4}));
    std::vector<ParamSpec> specs{{"a", a.param, true}, {"b", b.param, false}};
    std::unique_ptr<Optimizer> opt;
    if (sgd) opt = std::make_unique<SGD>(specs, SgdOptions{});
    else opt = std::make_unique<Adam>(specs, adamw_options(0.01, 0.1));
    if (in_backward) opt->apply_in_backward();
    CHECK(opt->in_backward() == in_backward);
    for (int t = 0; t < 4; ++t) {
      opt->prepare_step();
      backward(sum(a.param * x * b.param + b.param));
      if (in_backward) {
        CHECK_FALSE(a.param.grad().defined());  // consumed by the hook
        CHECK_FALSE(b.param.grad().defined());
      } else {
        opt->apply_step();
        opt->zero_grad();
      }
    }
    std::vector<double> values = a.param.to_vector<double>();
    for (double v : b.param.to_vector<double>()) values.push_back(v);
    return values;
  };
  for (bool sgd : {false, true}) {
    CAPTURE(sgd);
    CHECK(run(true, sgd) == run(false, sgd));
  }
}

TEST_CASE("an optimizer's destructor removes its in-backward hooks") {
  Fixture f;
  {
    Adam adam({{"w", f.param, true}}, AdamOptions{});
    adam.apply_in_backward();
  }
  backward(sum(f.param * 2.0));
  CHECK(f.param.grad().to_vector<double>() == std::vector<double>{2, 2, 2, 2});  // kept: no hook ran
}

TEST_CASE("clip_grad_norm scales to the max norm and reports the norm before clipping") {
  Tensor a = zeros({2}, DType::f32), b = zeros({1}, DType::f32);
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  a.set_grad(from_vector<float>({3, 0}, {2}));
  b.set_grad(from_vector<float>({4}, {1}));
  const Tensor norm = clip_grad_norm({a, b}, 1.0);
  CHECK(norm.item() == doctest::Approx(5.0));
  CHECK(a.grad().to_vector<float>()[0] == doctest::Approx(0.6).epsilon(1e-5));
  CHECK(b.grad().to_vector<float>()[0] == doctest::Approx(0.8).epsilon(1e-5));
  const Tensor small = clip_grad_norm({a, b}, 10.0);  // below the limit: unchanged
  CHECK(a.grad().to_vector<float>()[0] == doctest::Approx(0.6).epsilon(1e-5));
  CHECK(small.item() == doctest::Approx(1.0).epsilon(1e-5));
}

TEST_CASE("clip_grad_norm counts a shared gradient per parameter but scales its storage once") {
  Tensor a = zeros({1}, DType::f32), b = zeros({1}, DType::f32);
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  const Tensor shared = from_vector<float>({4}, {1});
  a.set_grad(shared);
  b.set_grad(shared);
  const Tensor norm = clip_grad_norm({a, b}, 2.0);
  CHECK(norm.item() == doctest::Approx(std::sqrt(32.0)));
  // 4 * 2 / sqrt(32), applied once, not twice
  CHECK(a.grad().to_vector<float>()[0] == doctest::Approx(8.0 / std::sqrt(32.0)).epsilon(1e-5));
  CHECK(b.grad().to_vector<float>()[0] == doctest::Approx(8.0 / std::sqrt(32.0)).epsilon(1e-5));
}

TEST_CASE("clip_grad_norm makes a strided gradient contiguous") {
  Tensor a = zeros({2, 2}, DType::f32);
  a.set_requires_grad(true);
  a.set_grad(from_vector<float>({3, 0, 4, 0}, {2, 2}).raw_transpose(0, 1));  // [[3, 4], [0, 0]]
  CHECK_FALSE(a.grad().is_contiguous());
  (void)clip_grad_norm({a}, 1.0);
  CHECK(a.grad().is_contiguous());
  const std::vector<float> g = a.grad().to_vector<float>();
  CHECK(g[0] == doctest::Approx(0.6).epsilon(1e-5));
  CHECK(g[1] == doctest::Approx(0.8).epsilon(1e-5));
  CHECK(g[2] == 0.0f);
}

TEST_CASE("cosine schedule with linear warm-up") {
  CHECK(cosine_lr(0, 100, 10, 1.0) == doctest::Approx(0.1));
  CHECK(cosine_lr(9, 100, 10, 1.0) == doctest::Approx(1.0));
  CHECK(cosine_lr(10, 100, 10, 1.0) == doctest::Approx(1.0));
  CHECK(cosine_lr(55, 100, 10, 1.0) == doctest::Approx(0.5));
  CHECK(cosine_lr(100, 100, 10, 1.0, 0.1) == doctest::Approx(0.1));
}

TEST_CASE("optimizer state loading is strict: a missing, extra, mis-shaped or mis-typed buffer is an error") {
  Fixture a;
  Adam adam({{"w", a.param, true}}, AdamOptions{});
  a.set_grad(0);
  adam.step();
  const auto state = adam.state_dict();
  CHECK(state.size() == 3);  // step, w.exp_avg, w.exp_avg_sq
  auto without = state;
  without.erase("w.exp_avg_sq");
  CHECK_THROWS_WITH_AS(adam.load_state_dict(without),
                       "optimizer load_state_dict: missing key 'w.exp_avg_sq' (expected shape [4])", ValueError);
  auto extra = state;
  extra["v.exp_avg"] = zeros({4}, DType::f64);
  CHECK_THROWS_WITH_AS(adam.load_state_dict(extra),
                       "optimizer load_state_dict: unexpected key 'v.exp_avg' (shape [4]) is not 'step' nor "
                       "'<parameter>.<buffer>' of this optimizer (buffers: exp_avg, exp_avg_sq)",
                       ValueError);
  auto misshaped = state;
  misshaped["w.exp_avg"] = zeros({2}, DType::f64);
  CHECK_THROWS_WITH_AS(adam.load_state_dict(misshaped), "optimizer load_state_dict: 'w.exp_avg' has shape [2], expected [4]",
                       ShapeError);
  auto mistyped = state;
  mistyped["w.exp_avg"] = zeros({4}, DType::f32);
  CHECK_THROWS_WITH_AS(adam.load_state_dict(mistyped), "optimizer load_state_dict: 'w.exp_avg' has dtype f32, expected f64",
                       TypeError);
  auto negative = state;
  negative["step"] = from_vector<int64_t>({-3}, {1});
  CHECK_THROWS_WITH_AS(adam.load_state_dict(negative), "optimizer load_state_dict: 'step' is -3, expected >= 0", ValueError);
  // A refused state leaves the optimizer as it was.
  CHECK(adam.step_count() == 1);
  // A parameter without a gradient yet has zero buffers in the state dict, so it round-trips.
  Fixture fresh;
  SGD sgd({{"w", fresh.param, false}}, SgdOptions{});
  CHECK(sgd.state_dict().at("w.momentum_buffer").to_vector<double>() == std::vector<double>{0, 0, 0, 0});
  sgd.load_state_dict(sgd.state_dict());
}
