// layer_norm on CUDA against the CPU (output and the gradients of x, weight and bias) on widths
// that take the warp-per-row register tiles and the block-per-row path, with enough rows to
// cap the grid (several rows per block); the weight/bias gradients are bitwise reproducible.
#include <doctest/doctest.h>

#include "ops/layer_norm.h"
#include "tests/ops/residual_norm_check.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::check_cuda_matches_cpu;
using test::random_tensor;


TEST_CASE("layer_norm: CUDA matches CPU, affine and not, on every row layout") {
  const std::vector<Shape> shapes = {{5, 7}, {3, 5, 33}, {4, 197, 192}, {2, 50, 384}, {64, 768}, {7, 1000},
                                     {6, 2000}, {4500, 192}, {3, 1, 5000}};
  uint64_t seed = 700;
  for (const Shape& shape : shapes) {
    CAPTURE(shape.str());
    const int64_t d = shape[shape.ndim() - 1];
    const Tensor x = test::random_param(shape, seed++, -3, 5), w = test::random_param({d}, seed++, 0.5, 2), b = test::random_param({d}, seed++);
    check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }, {x, w, b});
    check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), Tensor(), 0.1); },
                           {x});
    check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor()); },
                           {x.detach(), w});  // weight gradient alone
  }
}

TEST_CASE("layer_norm: the bf16 output of an f32 input on CUDA matches the CPU (forward and gradients)") {
  uint64_t seed = 780;
  for (const Shape& shape : std::vector<Shape>{{4, 197, 192}, {64, 768}, {6, 2000}}) {
    CAPTURE(shape.str());
    const int64_t d = shape[shape.ndim() - 1];
    const Tensor x = test::random_param(shape, seed++, -3, 5), w = test::random_param({d}, seed++, 0.5, 2),
                 b = test::random_param({d}, seed++);
    // bf16 output and gradient: the tolerance of one bf16 rounding.
    check_cuda_matches_cpu(
        [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-6, DType::bf16); }, {x, w, b},
        1e-2);
  }
}

TEST_CASE("layer_norm weight and bias gradients on CUDA are bitwise reproducible") {
  for (int64_t d : {384, 3000}) {
    CAPTURE(d);
    const Tensor x = random_tensor({5000, d}, 750).to(Device::cuda(0));
    const Tensor g = random_tensor({5000, d}, 751).to(Device::cuda(0));
    std::vector<std::vector<float>> runs;
    for (int run = 0; run < 2; ++run) {
      Tensor w = random_tensor({d}, 752).to(Device::cuda(0)), b = zeros({d}, DType::f32, Device::cuda(0));
      w.set_requires_grad(true);
      b.set_requires_grad(true);
      backward(layer_norm(x, w, b), g);
      auto values = w.grad().to_vector<float>();
      const auto bias = b.grad().to_vector<float>();
      values.insert(values.end(), bias.begin(), bias.end());
      runs.push_back(values);
    }
    CHECK(runs[0] == runs[1]);
  }
}

TEST_CASE("layer_norm on CUDA adds x's gradient into the residual stream's, bit for bit the engine's sum") {
  // 768 and 384 columns take the 16-byte vector kernels in f32, 192 and 1000 the row layouts.
  uint64_t seed = 950;
  for (const Shape& shape : std::vector<Shape>{{4, 197, 192}, {64, 768}, {2, 65, 384}, {7, 1000}}) {
    for (DType dtype : {DType::f32, DType::bf16})
      test::check_norm_adds_into_residual_gradient(Device::cuda(0), dtype, dtype, shape, seed += 4);
    test::check_norm_adds_into_residual_gradient(Device::cuda(0), DType::f32, DType::bf16, shape, seed += 4);
  }
}
