// Activation checkpointing: the same output and gradients as the function itself (bit for bit,
// dropout included through the rewound generator), only the inputs kept, the generator left
// where the program took it, and no node without grad mode.
#include <doctest/doctest.h>

#include "autograd/checkpoint.h"
#include "autograd/engine.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/matmul/matmul.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;

namespace {

struct Run {
  std::vector<double> out, grad_x, grad_w;
  uint64_t offset_after_forward, offset_after_backward;
};

// y = dropout(gelu(x·w)) · 3 + x, x [8, 16], w [16, 16] a parameter.
Run run(bool checkpointed) {
  Generator generator(42);
  Tensor x = test::random_param({8, 16}, 1), w = test::random_param({16, 16}, 2);
  auto fn = [&](const std::vector<Tensor>& in) {
    return add(mul(dropout(gelu(matmul(in[0], w)), 0.3, true, generator), 3.0), in[0]);
  };
  const Tensor y = checkpointed ? checkpoint(fn, {x}, {&generator}) : fn({x});
  Run r;
  r.offset_after_forward = generator.offset();
  backward(y, test::random_tensor({8, 16}, 3));
  r.offset_after_backward = generator.offset();
  r.out = host_values(y);
  r.grad_x = host_values(x.grad());
  r.grad_w = host_values(w.grad());
  return r;
}

}  // namespace

TEST_CASE("checkpoint: output and gradients equal the plain function's bit for bit, dropout included") {
  const Run plain = run(false), kept = run(true);
  CHECK(kept.out == plain.out);
  CHECK(kept.grad_x == plain.grad_x);
  CHECK(kept.grad_w == plain.grad_w);
  CHECK(kept.offset_after_forward == plain.offset_after_forward);
  // The rerun rewinds the generator and puts it back: later draws are unaffected.
  CHECK(kept.offset_after_backward == kept.offset_after_forward);
}

TEST_CASE("checkpoint keeps only its inputs, and records nothing without grad mode") {
  Tensor x = test::random_param({32, 64}, 4), w = test::random_param({64, 64}, 5);
  auto fn = [&](const std::vector<Tensor>& in) { return gelu(matmul(gelu(matmul(in[0], w)), w)); };
  const Tensor y = checkpoint(fn, {x});
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->name() == "CheckpointBackward");
  CHECK(y.grad_fn()->saved_bytes() == x.nbytes());
  {
    NoGradGuard no_grad;
    CHECK(!checkpoint(fn, {x}).grad_fn());
  }
  // An input that needs no gradient: still checkpointed, and w's gradient comes from the rerun.
  const Tensor z = checkpoint(fn, {x.detach()});
  REQUIRE(z.grad_fn());
  backward(z, test::random_tensor({32, 64}, 6));
  Tensor w2 = w.detach().clone();
  w2.set_requires_grad(true);
  backward(gelu(matmul(gelu(matmul(x.detach(), w2)), w2)), test::random_tensor({32, 64}, 6));
  CHECK(host_values(w.grad()) == host_values(w2.grad()));
  CHECK(!x.grad().defined());
}
