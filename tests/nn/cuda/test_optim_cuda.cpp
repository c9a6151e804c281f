// Fused optimizer kernels on CUDA match the CPU updates.
#include <doctest/doctest.h>

#include "nn/optim.h"
#include "tests/support/op_checks.h"

using namespace tg;
using namespace tg::nn;

TEST_CASE("Adam, AdamW and SGD steps on CUDA match CPU") {
  for (int kind = 0; kind < 3; ++kind) {
    CAPTURE(kind);
    const Tensor init = test::random_tensor({1000, 37}, 9);
    std::vector<Tensor> params;
    std::vector<std::unique_ptr<Optimizer>> optimizers;
    for (Device device : {Device::cpu(), Device::cuda(0)}) {
      Tensor p = init.to(device).clone();
      p.set_requires_grad(true);
      params.push_back(p);
      std::vector<ParamSpec> specs{{"p", p, true}};
      if (kind == 0) optimizers.push_back(std::make_unique<Adam>(specs, AdamOptions{1e-2, 0.9, 0.999, 1e-8, 0.1, false}));
      if (kind == 1) optimizers.push_back(std::make_unique<Adam>(specs, adamw_options(1e-2, 0.05)));
      if (kind == 2) optimizers.push_back(std::make_unique<SGD>(specs, SgdOptions{0.1, 0.9, 1e-4, 0, true}));
    }
    for (int t = 0; t < 3; ++t) {
      const Tensor grad = test::random_tensor({1000, 37}, 100 + static_cast<uint64_t>(t));
      for (size_t d = 0; d < 2; ++d) {
        params[d].set_grad(grad.to(params[d].device()));
        optimizers[d]->step();
      }
    }
    CHECK(test::relative_error(test::host_values(params[1]), test::host_values(params[0])) < 1e-6);
  }
}

TEST_CASE("Adam on CUDA: multi-tensor launches over 100 parameters of both decay settings match CPU") {
  // More parameters than one launch takes (48), sizes from 1 element to several chunks, the two
  // weight-decay groups interleaved, and one parameter without a gradient (left untouched).
  std::vector<std::vector<Tensor>> params(2);
  std::vector<std::unique_ptr<Optimizer>> optimizers;
  for (size_t d = 0; d < 2; ++d) {
    std::vector<ParamSpec> specs;
    for (int i = 0; i < 101; ++i) {
      const int64_t n = 1 + (i * 977) % 9000;
      Tensor p = test::random_tensor({n}, 300 + static_cast<uint64_t>(i)).to(d == 0 ? Device::cpu() : Device::cuda(0)).clone();
      p.set_requires_grad(true);
      params[d].push_back(p);
      specs.push_back({std::to_string(i), p, i % 3 != 0});
    }
    optimizers.push_back(std::make_unique<Adam>(specs, adamw_options(1e-2, 0.05)));
  }
  for (int t = 0; t < 3; ++t) {
    for (size_t d = 0; d < 2; ++d) {
      for (size_t i = 0; i < params[d].size(); ++i) {
        if (i == 7) continue;
        const Tensor grad = test::random_tensor(params[d][i].shape(), 900 + 7 * i + static_cast<uint64_t>(t));
        params[d][i].set_grad(grad.to(params[d][i].device()));
      }
      optimizers[d]->step();
    }
  }
  for (size_t i = 0; i < params[0].size(); ++i) {
    CAPTURE(i);
    CHECK(test::relative_error(test::host_values(params[1][i]), test::host_values(params[0][i])) < 1e-6);
  }
  CHECK(test::host_values(params[1][7]) ==
        test::host_values(test::random_tensor(params[1][7].shape(), 307)));  // no gradient: unchanged
}

TEST_CASE("clip_grad_norm on CUDA: multi-tensor launches match CPU, and leave gradients untouched under the limit") {
  // 100 parameters (three launches of up to 48), sizes from 1 element to several chunks.
  std::vector<Shape> shapes;
  for (int64_t i = 0; i < 100; ++i) shapes.push_back(i % 10 == 0 ? Shape{3 * 16384 + i} : Shape{1 + i * 37});
  std::vector<std::vector<Tensor>> params(2);
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Tensor grad = test::random_tensor(shapes[i], 500 + i);
    for (size_t d = 0; d < 2; ++d) {
      Tensor p = zeros(shapes[i], DType::f32, d == 0 ? Device::cpu() : Device::cuda(0));
      p.set_requires_grad(true);
      p.set_grad(grad.to(p.device()).clone());
      params[d].push_back(p);
    }
  }
  std::vector<double> norms;
  for (size_t d = 0; d < 2; ++d) norms.push_back(clip_grad_norm(params[d], 10.0).item());
  CHECK(norms[1] == doctest::Approx(norms[0]).epsilon(1e-5));
  CHECK(norms[0] > 10.0);
  for (size_t i = 0; i < shapes.size(); ++i) {
    CAPTURE(i);
    CHECK(test::relative_error(test::host_values(params[1][i].grad()), test::host_values(params[0][i].grad())) < 1e-5);
  }
  // Now within the limit (norm 10): the scale pass is skipped, the bits stay as they are.
  std::vector<std::vector<double>> before;
  for (const Tensor& p : params[1]) before.push_back(test::host_values(p.grad()));
  CHECK(clip_grad_norm(params[1], 11.0).item() == doctest::Approx(10.0).epsilon(1e-5));
  for (size_t i = 0; i < shapes.size(); ++i) CHECK(test::host_values(params[1][i].grad()) == before[i]);
}
