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
