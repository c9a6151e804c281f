// softmax and log_softmax on the CPU: f64 row references over odd shapes and size-1 dims,
// extreme and -inf inputs, strided inputs, gradcheck, what backward keeps, and errors.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "ops/softmax.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;
using test::random_tensor;

namespace {

// Softmax (or log-softmax) of every row of the last dim, in f64 with the row max subtracted.
std::vector<double> reference(const Tensor& x, bool log) {
  std::vector<double> v = host_values(x);
  const int64_t cols = x.size(-1);
  for (size_t r = 0; r * static_cast<size_t>(cols) < v.size(); ++r) {
    double* row = v.data() + r * static_cast<size_t>(cols);
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < cols; ++j) m = std::max(m, row[j]);
    for (int64_t j = 0; j < cols; ++j) s += std::exp(row[j] - m);
    for (int64_t j = 0; j < cols; ++j) row[j] = log ? row[j] - m - std::log(s) : std::exp(row[j] - m) / s;
  }
  return v;
}

const std::vector<Shape> kShapes = {{1, 7}, {3, 5, 33}, {2, 1, 1000}, {4}, {6, 1}, {2, 3, 197}};

}  // namespace

TEST_CASE("softmax and log_softmax match f64 references") {
  uint64_t seed = 200;
  for (const Shape& shape : kShapes) {
    CAPTURE(shape.str());
    const Tensor x = random_tensor(shape, seed++, -4, 4);
    const Tensor y = softmax(x), ly = log_softmax(x);
    CHECK(y.shape() == shape);
    CHECK(test::relative_error(host_values(y), reference(x, false)) < 1e-6);
    const Tensor xd = x.to(DType::f64);
    CHECK(test::relative_error(host_values(softmax(xd)), reference(xd, false)) < 1e-13);
    if (x.size(-1) == 1) {  // log_softmax of one column is exactly 0: no relative error to take
      CHECK(host_values(ly) == std::vector<double>(static_cast<size_t>(x.numel()), 0.0));
      continue;
    }
    CHECK(test::relative_error(host_values(ly), reference(x, true)) < 1e-6);
    CHECK(test::relative_error(host_values(log_softmax(xd)), reference(xd, true)) < 1e-13);
  }
  const Tensor x = random_tensor({5, 40}, 210);
  CHECK(test::relative_error(host_values(softmax(x.to(DType::bf16))), reference(x, false)) < 1e-2);
}

TEST_CASE("softmax is stable for large logits and ignores -inf entries") {
  const Tensor big = random_tensor({3, 50}, 220, 1000, 1010);
  CHECK(test::relative_error(host_values(softmax(big)), reference(big, false)) < 1e-5);
  CHECK(test::relative_error(host_values(log_softmax(big)), reference(big, true)) < 1e-5);
  const Tensor masked = from_vector<float>({1, -INFINITY, 2, -INFINITY, -INFINITY, 0}, {2, 3});
  const auto y = softmax(masked).to_vector<float>();
  CHECK(y[1] == 0.0f);
  CHECK(y[0] == doctest::Approx(1 / (1 + std::exp(1.0))));
  CHECK(y[3] == 0.0f);
  CHECK(y[4] == 0.0f);
  CHECK(y[5] == 1.0f);
  CHECK(std::isinf(log_softmax(masked).to_vector<float>()[1]));
}

TEST_CASE("softmax of a strided view equals softmax of its contiguous copy") {
  const Tensor x = random_tensor({6, 9}, 230);
  const Tensor xt = x.raw_transpose(0, 1);
  CHECK(host_values(softmax(xt)) == host_values(softmax(xt.raw_contiguous())));
  CHECK(host_values(log_softmax(xt)) == host_values(log_softmax(xt.raw_contiguous())));
}

TEST_CASE("gradcheck: softmax and log_softmax") {
  uint64_t seed = 240;
  for (const Shape& shape : std::vector<Shape>{{3, 5}, {2, 1, 7}, {4}, {3, 1}}) {
    CAPTURE(shape.str());
    Tensor x = random_tensor(shape, seed++, -2, 2, DType::f64);
    x.set_requires_grad(true);
    const auto s = gradcheck([](const std::vector<Tensor>& in) { return softmax(in[0]); }, {x});
    CHECK_MESSAGE(s.ok, s.message);
    const auto l = gradcheck([](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {x});
    CHECK_MESSAGE(l.ok, l.message);
  }
}

TEST_CASE("softmax backward keeps only its output") {
  Tensor x = random_tensor({4, 33}, 250);
  x.set_requires_grad(true);
  for (bool log : {false, true}) {
    const Tensor y = log ? log_softmax(x) : softmax(x);
    REQUIRE(y.grad_fn());
    CHECK(y.grad_fn()->name() == (log ? "LogSoftmaxBackward" : "SoftmaxBackward"));
    CHECK(y.grad_fn()->saved_bytes() == y.nbytes());
  }
}

TEST_CASE("softmax errors name the op") {
  CHECK_THROWS_WITH_AS(softmax(full({}, 1.0)), "softmax: expected a tensor with at least one dim, got a scalar",
                       ShapeError);
  CHECK_THROWS_WITH_AS(log_softmax(zeros({2, 3}, DType::i64)), "log_softmax: expected a floating dtype, got i64",
                       TypeError);
}
