// The backward engine: accumulation into leaves, graph shapes (diamonds, reuse), retain_graph,
// grad mode, and the typed errors of misuse.
#include <doctest/doctest.h>

#include "autograd/pending_grad.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tests/support/op_checks.h"

using namespace tg;

namespace {
Tensor leaf(std::vector<double> values, const Shape& shape) {
  Tensor t = from_vector(values, shape);
  t.set_requires_grad(true);
  return t;
}
}  // namespace

TEST_CASE("gradients flow to leaves and accumulate across uses and calls") {
  const Tensor x = leaf({1, 2, 3}, {3});
  const Tensor w = leaf({0.5, -1, 2}, {3});
  // y = sum(x * w + x * x): dy/dx = w + 2x, dy/dw = x
  const Tensor y = sum(x * w + x * x);
  CHECK(y.item() == doctest::Approx(0.5 - 2 + 6 + 1 + 4 + 9));
  backward(y);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2.5, 3, 8});
  CHECK(w.grad().to_vector<double>() == std::vector<double>{1, 2, 3});
  // A second graph accumulates into the same .grad.
  backward(sum(x * 2.0));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{4.5, 5, 10});
  zero_grad({x, w});
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("a post-accumulate-grad hook runs once per backward, after the leaf's whole gradient is in") {
  const Tensor w = leaf({1, 2}, {2}), x = leaf({3, 4}, {2});
  std::vector<std::vector<double>> seen;
  w.set_post_accumulate_grad_hook([&](const Tensor& param) {
    CHECK(param.impl_ptr() == w.impl_ptr());
    seen.push_back(param.grad().to_vector<double>());
  });
  // w is used twice: the hook sees the sum of both paths, once.
  backward(sum(w * x + w * w));  // dw = x + 2w = {5, 8}
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == std::vector<double>{5, 8});
  backward(sum(w * 3.0));  // accumulates: {8, 11}
  REQUIRE(seen.size() == 2);
  CHECK(seen[1] == std::vector<double>{8, 11});
  // A hook may free the gradient; an empty function removes the hook.
  w.set_post_accumulate_grad_hook([](const Tensor& param) { param.set_grad(Tensor()); });
  backward(sum(w * 3.0));
  CHECK_FALSE(w.grad().defined());
  w.set_post_accumulate_grad_hook({});
  backward(sum(w * 3.0));
  CHECK(w.grad().to_vector<double>() == std::vector<double>{3, 3});
  CHECK_THROWS_WITH_AS(sum(w * 2.0).set_post_accumulate_grad_hook({}),
                       "set_post_accumulate_grad_hook: expected a leaf that requires grad (a parameter), got a "
                       "tensor produced by an operation",
                       ValueError);
  CHECK_THROWS_WITH_AS(from_vector<double>({1}, {1}).set_post_accumulate_grad_hook({}),
                       "set_post_accumulate_grad_hook: expected a leaf that requires grad (a parameter), got a leaf "
                       "that does not require grad",
                       ValueError);
}

TEST_CASE("a diamond graph adds both paths; leaves never share a gradient buffer") {
  const Tensor a = leaf({3}, {1});
  const Tensor b = leaf({4}, {1});
  const Tensor s = a + b;      // AddBackward hands the same gradient to a and b
  const Tensor y = s * s;      // dy/ds = 2s = 14
  backward(sum(y));
  CHECK(a.grad().item() == 14);
  CHECK(b.grad().item() == 14);
  CHECK_FALSE(a.grad().shares_storage(b.grad()));
  a.grad().fill_(0);
  CHECK(b.grad().item() == 14);
}

TEST_CASE("results of recorded ops are not leaves; requires_grad propagates") {
  const Tensor x = leaf({1}, {1});
  const Tensor c = from_vector<double>({2}, {1});
  const Tensor y = x * c;
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  CHECK(y.grad_fn()->name() == "mulBackward");
  CHECK_FALSE((c * c).requires_grad());
  CHECK_THROWS_AS(y.set_requires_grad(false), ValueError);
  {
    NoGradGuard no_grad;
    CHECK_FALSE((x * c).requires_grad());
  }
  CHECK((x * c).requires_grad());
  CHECK_FALSE(x.detach().requires_grad());
  CHECK_THROWS_WITH_AS(from_vector<int32_t>({1}, {1}).set_requires_grad(true),
                       "set_requires_grad: only floating tensors can require gradients, got dtype i32", TypeError);
}

TEST_CASE("backward misuse gives typed errors with clear messages") {
  const Tensor x = leaf({1, 2}, {2});
  const Tensor y = x * x;
  CHECK_THROWS_WITH_AS(backward(y),
                       "backward: a gradient can be created implicitly only for a one-element output, got shape "
                       "[2]; pass the gradient explicitly",
                       ValueError);
  CHECK_THROWS_WITH_AS(backward(y, ones({3}, DType::f64)),
                       "backward: expected a gradient of shape [2], dtype f64 on cpu, got shape [3], dtype f64 on cpu",
                       ShapeError);
  CHECK_THROWS_WITH_AS(backward(from_vector<double>({1}, {1})),
                       "backward: the tensor does not require grad (no recorded operation connects it to a "
                       "tensor with requires_grad)",
                       ValueError);
  const Tensor loss = sum(y);
  backward(loss);
  CHECK_THROWS_WITH_AS(backward(loss),
                       "backward through SumBackward a second time: its saved tensors were freed after the first "
                       "backward; pass retain_graph=true to the first backward to keep them",
                       ValueError);
  CHECK_THROWS_WITH_AS(x + from_vector<double>({1, 2, 3}, {3}),
                       "add: shapes [2] and [3] cannot broadcast (dim -1 has sizes 2 and 3)", ShapeError);
  CHECK_THROWS_WITH_AS(x + from_vector<float>({1, 2}, {2}), "add: expected all tensors of dtype f64, got f32",
                       TypeError);
}

TEST_CASE("retain_graph keeps saved tensors for a second backward") {
  const Tensor x = leaf({3}, {1});
  const Tensor loss = sum(x * x * x);  // d/dx = 3x^2 = 27
  backward(loss, Tensor(), /*retain_graph=*/true);
  backward(loss);
  CHECK(x.grad().item() == 54);
}

namespace {
// A node whose backward returns a gradient of the wrong shape.
class BrokenNode final : public Node {
 public:
  BrokenNode() : Node("BrokenBackward") {}
  std::vector<Tensor> apply(std::vector<Tensor>&&) override { return {zeros({5}, DType::f64)}; }
};
}  // namespace

TEST_CASE("the engine validates each gradient and names the node") {
  const Tensor x = leaf({1, 2}, {2});
  Tensor out = zeros({1}, DType::f64);
  record(std::make_shared<BrokenNode>(), {x}, {out});
  CHECK_THROWS_WITH_AS(backward(out),
                       "backward of BrokenBackward returned a gradient of shape [5] for input 0, expected shape [2]",
                       ShapeError);
}

namespace {

// y = c·x, recorded with a backward that adds its gradient into the engine's pending sum for x
// (autograd/pending_grad.h) and counts the sums it was offered.
class ScaleIntoPending final : public Node, public AddsIntoPendingGrad {
 public:
  explicit ScaleIntoPending(double c) : Node("ScaleIntoPending"), c_(c) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const Tensor grad = grads[0] * c_;
    Tensor sum = take_pending_grad(0);
    if (!sum.defined()) return {grad};
    ++offers;
    sum.accumulate_(grad);
    return {sum};
  }
  bool adds_into_pending_grad(size_t input) const override { return input == 0; }
  int offers = 0;

 private:
  double c_;
};

Tensor scale_into_pending(const Tensor& x, double c, std::shared_ptr<ScaleIntoPending>& node) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = x * c;
  }
  node = std::make_shared<ScaleIntoPending>(c);
  record(node, {x}, {y});
  return y;
}

// y = x, recorded with a backward that passes its gradient on and keeps a handle to it: that
// memory is then not the engine's alone to write.
class PassAndKeep final : public Node {
 public:
  PassAndKeep() : Node("PassAndKeep") {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    kept = grads[0];
    return {kept};
  }
  Tensor kept;
};

}  // namespace

TEST_CASE("a node that adds into the pending gradient sum gets the sum collected so far, and the same result") {
  const Tensor x = leaf({1, 2, 3}, {3});
  std::shared_ptr<ScaleIntoPending> scale;
  const Tensor scaled = scale_into_pending(x, 3, scale);  // runs last in backward: recorded first
  backward(sum(scaled + x * 2.0));
  CHECK(scale->offers == 1);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{5, 5, 5});

  // Nothing summed yet for x when the node runs: nothing is offered.
  const Tensor z = leaf({1, 2}, {2});
  std::shared_ptr<ScaleIntoPending> alone;
  backward(sum(scale_into_pending(z, 3, alone)));
  CHECK(alone->offers == 0);
  CHECK(z.grad().to_vector<double>() == std::vector<double>{3, 3});
}

TEST_CASE("a pending gradient sum that another tensor can see is not offered, and is not written") {
  const Tensor x = leaf({1, 2, 3}, {3});
  std::shared_ptr<ScaleIntoPending> scale;
  const Tensor scaled = scale_into_pending(x, 3, scale);
  auto keep = std::make_shared<PassAndKeep>();
  Tensor through;
  {
    NoGradGuard no_grad;
    through = x.clone();
  }
  record(keep, {x}, {through});
  // d/dx of sum(scaled + 2·through) = 3 + 2; the skip gradient (2) passes through PassAndKeep,
  // which keeps it: the engine must sum into a copy.
  backward(sum(scaled + through * 2.0));
  CHECK(scale->offers == 0);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{5, 5, 5});
  CHECK(keep->kept.to_vector<double>() == std::vector<double>{2, 2, 2});
}

TEST_CASE("one gradient handed to several inputs is never summed into in place") {
  // add's backward hands the same tensor to both inputs; a sum collected into it in place would
  // change the other input's pending gradient too.
  const Tensor x = leaf({1, 2}, {2});
  backward(sum(x * 3.0 + x * 2.0 + x));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{6, 6});
  const Tensor y = leaf({1, 2}, {2});
  backward(sum(y * y + y + y));  // d/dy = 2y + 2
  CHECK(y.grad().to_vector<double>() == std::vector<double>{4, 6});
}
