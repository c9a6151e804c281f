// norm_linear: the same output and gradients as linear(layer_norm(x)) bit for bit (f32, bf16
// casts and mixed precision), gradcheck in f64, and what it keeps: not the norm's output.
#include <doctest/doctest.h>

#include "autograd/gradcheck.h"
#include "ops/layer_norm.h"
#include "ops/matmul/linear.h"
#include "ops/matmul/norm_linear.h"
#include "ops/shape_ops.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;

namespace {

// The forms of norm_linear's linear: f32; bf16 with the parameters cast by recorded casts; and
// mixed precision (the norm writes bf16, the f32 parameters go in as they are, as nn::Linear
// passes them under autocast).
enum class Form { f32, bf16_cast, mixed };

// All five gradients and the output of one run, fused or composed.
std::vector<std::vector<double>> run(bool fused, Form form) {
  Tensor x = test::random_param({3, 7, 32}, 10, -3, 3), nw = test::random_param({32}, 11, 0.5, 2),
         nb = test::random_param({32}, 12), w = test::random_param({48, 32}, 13), b = test::random_param({48}, 14);
  const DType dtype = form == Form::f32 ? DType::f32 : DType::bf16;
  const Tensor wc = form == Form::bf16_cast ? cast(w, dtype) : w, bc = form == Form::bf16_cast ? cast(b, dtype) : b;
  const Tensor out = fused ? norm_linear(x, nw, nb, 1e-6, dtype, wc, bc) : linear(layer_norm(x, nw, nb, 1e-6, dtype), wc, bc);
  backward(out, test::random_tensor(out.shape(), 15, -1, 1, DType::f32).to(dtype));
  CHECK(w.grad().dtype() == DType::f32);
  return {host_values(out), host_values(x.grad()), host_values(nw.grad()), host_values(nb.grad()),
          host_values(w.grad()), host_values(b.grad())};
}

}  // namespace

TEST_CASE("norm_linear equals linear(layer_norm(x)) bit for bit: f32, bf16 casts and mixed precision") {
  for (Form form : {Form::f32, Form::bf16_cast, Form::mixed}) {
    CAPTURE(static_cast<int>(form));
    const auto fused = run(true, form), composed = run(false, form);
    REQUIRE(fused.size() == composed.size());
    for (size_t i = 0; i < fused.size(); ++i) {
      CAPTURE(i);
      CHECK(fused[i] == composed[i]);
    }
  }
}

TEST_CASE("gradcheck: norm_linear in f64, every input") {
  Tensor x = test::random_tensor({2, 3, 6}, 20, -2, 2, DType::f64), nw = test::random_tensor({6}, 21, 0.5, 2, DType::f64),
         nb = test::random_tensor({6}, 22, -1, 1, DType::f64), w = test::random_tensor({5, 6}, 23, -1, 1, DType::f64),
         b = test::random_tensor({5}, 24, -1, 1, DType::f64);
  for (Tensor* t : {&x, &nw, &nb, &w, &b}) t->set_requires_grad(true);
  const auto check = gradcheck(
      [](const std::vector<Tensor>& in) { return norm_linear(in[0], in[1], in[2], 1e-5, DType::f64, in[3], in[4]); },
      {x, nw, nb, w, b});
  CHECK_MESSAGE(check.ok, check.message);
}

TEST_CASE("norm_linear keeps x, the row statistics and the weights, not the norm's output") {
  Tensor x = test::random_param({64, 128}, 30), nw = test::random_param({128}, 31), nb = test::random_param({128}, 32),
         w = test::random_param({256, 128}, 33), b = test::random_param({256}, 34);
  const Tensor out = norm_linear(x, nw, nb, 1e-6, DType::f32, w, b);
  REQUIRE(out.grad_fn());
  CHECK(out.grad_fn()->name() == "NormLinearBackward");
  // x, mean and rstd (64 rows each), the norm's weight and bias, the linear's weight.
  CHECK(out.grad_fn()->saved_bytes() == x.nbytes() + 2 * 64 * 4 + nw.nbytes() + nb.nbytes() + w.nbytes());
}
