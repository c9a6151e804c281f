// gradcheck itself: it accepts correct backward functions and rejects a wrong one.
#include <doctest/doctest.h>

#include "autograd/gradcheck.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tests/support/op_checks.h"

using namespace tg;

namespace {
// Forward is x^2 but backward claims 3x: gradcheck must notice.
class WrongSquareBackward final : public Node {
 public:
  explicit WrongSquareBackward(const Tensor& x) : Node("WrongSquareBackward") { save(x); }
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override { return {grads[0] * saved(0) * 3.0}; }
};

Tensor wrong_square(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = x * x;
  }
  record(std::make_shared<WrongSquareBackward>(x), {x}, {out});
  return out;
}
}  // namespace

TEST_CASE("gradcheck passes a correct composite and fails a wrong backward") {
  Tensor x = test::random_tensor({3, 4}, 1, -1, 1, DType::f64);
  x.set_requires_grad(true);
  const auto good = gradcheck([](const std::vector<Tensor>& in) { return tanh(in[0]) * exp(in[0]); }, {x});
  CHECK_MESSAGE(good.ok, good.message);
  const auto bad = gradcheck([](const std::vector<Tensor>& in) { return wrong_square(in[0]); }, {x});
  CHECK_FALSE(bad.ok);
  CHECK(bad.message.find("gradcheck: input 0 (shape [3, 4]), element 0") == 0);
  CHECK_THROWS_AS(gradcheck([](const std::vector<Tensor>& in) { return in[0]; }, {zeros({2})}), TypeError);
}
