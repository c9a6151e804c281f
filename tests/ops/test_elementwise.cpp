// Elementwise ops on the CPU: forward against f64 host references (broadcast shapes, odd sizes,
// size-1 dims), backward by gradcheck, and error messages.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "ops/elementwise.h"
#include "ops/shape_ops.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;
using test::random_tensor;

namespace {

// Reference for a broadcasting binary op: index each operand like NumPy does.
std::vector<double> broadcast_reference(const Tensor& a, const Tensor& b, double (*f)(double, double)) {
  const Shape out = broadcast_shapes(a.shape(), b.shape(), "reference");
  const auto av = host_values(a.raw_expand(out)), bv = host_values(b.raw_expand(out));
  std::vector<double> result(av.size());
  for (size_t i = 0; i < av.size(); ++i) result[i] = f(av[i], bv[i]);
  return result;
}

const std::vector<std::pair<Shape, Shape>> kBroadcastCases = {
    {{7}, {7}}, {{3, 5}, {5}}, {{2, 1, 4}, {3, 1}}, {{1}, {4, 3}}, {{2, 3, 1, 5}, {1, 3, 4, 1}}, {{1, 1}, {1, 1}}};

}  // namespace

TEST_CASE("binary ops match f64 references over broadcast shapes") {
  uint64_t seed = 10;
  for (const auto& [sa, sb] : kBroadcastCases) {
    CAPTURE(sa.str());
    CAPTURE(sb.str());
    const Tensor a = random_tensor(sa, seed++), b = random_tensor(sb, seed++, 0.5, 2);  // b away from 0
    CHECK(test::relative_error(host_values(a + b), broadcast_reference(a, b, [](double x, double y) { return x + y; })) < 1e-7);
    CHECK(test::relative_error(host_values(a - b), broadcast_reference(a, b, [](double x, double y) { return x - y; })) < 1e-7);
    CHECK(test::relative_error(host_values(a * b), broadcast_reference(a, b, [](double x, double y) { return x * y; })) < 1e-7);
    CHECK(test::relative_error(host_values(a / b), broadcast_reference(a, b, [](double x, double y) { return x / y; })) < 1e-7);
  }
}

TEST_CASE("unary and scalar ops match f64 references") {
  const Tensor x = random_tensor({3, 17}, 21, -3, 3);
  const Tensor positive = random_tensor({5, 1, 3}, 22, 0.1, 4);
  auto reference = [](const Tensor& t, double (*f)(double)) {
    auto v = host_values(t);
    for (double& e : v) e = f(e);
    return v;
  };
  CHECK(test::relative_error(host_values(exp(x)), reference(x, [](double v) { return std::exp(v); })) < 1e-6);
  CHECK(test::relative_error(host_values(log(positive)), reference(positive, [](double v) { return std::log(v); })) < 1e-6);
  CHECK(test::relative_error(host_values(sqrt(positive)), reference(positive, [](double v) { return std::sqrt(v); })) < 1e-6);
  CHECK(test::relative_error(host_values(tanh(x)), reference(x, [](double v) { return std::tanh(v); })) < 1e-6);
  CHECK(test::relative_error(host_values(relu(x)), reference(x, [](double v) { return v > 0 ? v : 0.0; })) < 1e-7);
  CHECK(test::relative_error(host_values(gelu(x)), reference(x, [](double v) {
          return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
        })) < 1e-6);
  CHECK(test::relative_error(host_values(gelu(x, GeluApproximation::tanh)), reference(x, [](double v) {
          return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        })) < 1e-6);
  CHECK(test::relative_error(host_values(3.0 - x * 2.0 + 1.5), reference(x, [](double v) { return 3 - 2 * v + 1.5; })) < 1e-7);
  CHECK(test::relative_error(host_values(-x / 4.0), reference(x, [](double v) { return -v / 4; })) < 1e-7);
}

TEST_CASE("elementwise ops work on strided views and bf16") {
  const Tensor x = random_tensor({4, 6}, 31);
  const Tensor xt = x.raw_transpose(0, 1);  // non-contiguous input
  CHECK(host_values(exp(xt)) == host_values(exp(x).raw_transpose(0, 1)));
  CHECK(host_values(xt + xt) == host_values((x + x).raw_transpose(0, 1)));
  const Tensor h = x.to(DType::bf16);
  const Tensor y = (h * h).to(DType::f32);
  CHECK(test::relative_error(host_values(y), host_values(x * x)) < 1e-2);
}

TEST_CASE("gradcheck: binary ops with broadcasting") {
  uint64_t seed = 40;
  for (const auto& [sa, sb] : kBroadcastCases) {
    CAPTURE(sa.str());
    CAPTURE(sb.str());
    Tensor a = random_tensor(sa, seed++, -2, 2, DType::f64), b = random_tensor(sb, seed++, 0.5, 2, DType::f64);
    a.set_requires_grad(true);
    b.set_requires_grad(true);
    for (auto* f : {+[](const Tensor& p, const Tensor& q) { return p + q; },
                    +[](const Tensor& p, const Tensor& q) { return p - q; },
                    +[](const Tensor& p, const Tensor& q) { return p * q; },
                    +[](const Tensor& p, const Tensor& q) { return p / q; }}) {
      const auto result = gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], in[1]); }, {a, b});
      CHECK_MESSAGE(result.ok, result.message);
    }
  }
}

TEST_CASE("gradcheck: unary and scalar ops") {
  Tensor x = random_tensor({2, 3, 5}, 50, -2, 2, DType::f64);
  Tensor positive = random_tensor({7}, 51, 0.2, 3, DType::f64);
  x.set_requires_grad(true);
  positive.set_requires_grad(true);
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> fns = {
      {"exp", [](const Tensor& t) { return exp(t); }},
      {"tanh", [](const Tensor& t) { return tanh(t); }},
      {"relu", [](const Tensor& t) { return relu(t); }},
      {"gelu", [](const Tensor& t) { return gelu(t); }},
      {"gelu_tanh", [](const Tensor& t) { return gelu(t, GeluApproximation::tanh); }},
      {"affine", [](const Tensor& t) { return 2.0 - t * 3.0; }},
  };
  for (const auto& [name, fn] : fns) {
    CAPTURE(name);
    const auto result = gradcheck([&](const std::vector<Tensor>& in) { return fn(in[0]); }, {x});
    CHECK_MESSAGE(result.ok, result.message);
  }
  const auto log_result = gradcheck([](const std::vector<Tensor>& in) { return log(in[0]); }, {positive});
  CHECK_MESSAGE(log_result.ok, log_result.message);
  const auto sqrt_result = gradcheck([](const std::vector<Tensor>& in) { return sqrt(in[0]); }, {positive});
  CHECK_MESSAGE(sqrt_result.ok, sqrt_result.message);
}

TEST_CASE("add_converted is add(a, cast(b)) bit for bit, gradients included, in one node") {
  auto run = [](bool fused) {
    Tensor a = test::random_param({3, 5, 8}, 60), b = test::random_param({3, 5, 8}, 61).detach().to(DType::bf16);
    b.set_requires_grad(true);
    const Tensor out = fused ? add_converted(a, b) : add(a, cast(b, DType::f32));
    CHECK(out.dtype() == DType::f32);
    backward(out, random_tensor({3, 5, 8}, 62));
    CHECK(b.grad().dtype() == DType::bf16);
    return std::vector<std::vector<double>>{host_values(out), host_values(a.grad()), host_values(b.grad())};
  };
  CHECK(run(true) == run(false));
  Tensor a = zeros({2, 3}), b = zeros({2, 3}, DType::bf16);
  a.set_requires_grad(true);
  CHECK(add_converted(a, b).grad_fn()->name() == "AddConvertedBackward");
  // Broadcasting falls back to the composition.
  CHECK(add_converted(a, zeros({3}, DType::bf16)).grad_fn()->name() == "addBackward");
  CHECK_THROWS_WITH_AS(add_converted(a, zeros({2, 3}, DType::i32)), "add: expected floating dtypes, got f32 and i32",
                       TypeError);
}

TEST_CASE("elementwise errors name the op and both operands") {
  const Tensor a = zeros({2, 3});
  CHECK_THROWS_WITH_AS(a * zeros({4}), "mul: shapes [2, 3] and [4] cannot broadcast (dim -1 has sizes 3 and 4)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(a - zeros({2, 3}, DType::f64), "sub: expected all tensors of dtype f32, got f64", TypeError);
  CHECK_THROWS_WITH_AS(exp(zeros({2}, DType::i32)), "exp: expected a floating dtype, got i32", TypeError);
}
