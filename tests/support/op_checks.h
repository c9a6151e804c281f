// Checks shared by the op tests: random inputs that are never all zero (uniform, or rows with
// log-normal norms), f64 host copies, and the CUDA-versus-CPU comparison of an op's outputs and
// input gradients.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "ops/elementwise.h"
#include "tests/support/test_support.h"

namespace tg::test {

// Uniform values in [low, high) from a fixed seed (draws are never all zero).
inline Tensor random_tensor(const Shape& shape, uint64_t seed, double low = -2, double high = 2,
                            DType dtype = DType::f32, Device device = Device::cpu()) {
  Generator generator(seed);
  return rand(shape, dtype, device, generator, low, high);
}

// X [n, d] (f32, CPU) whose row norms spread like real activations: standard normal rows, row i
// scaled by exp(sigma * z_i). A large sigma gives the sampled strategies winners.
inline Tensor lognormal_rows(int64_t n, int64_t d, double sigma, uint64_t seed) {
  Generator g(seed);
  const Tensor base = randn({n, d}, DType::f32, Device::cpu(), g);
  const Tensor scale = exp(randn({n, 1}, DType::f32, Device::cpu(), g, 0, sigma));
  return base * scale;
}

// random_tensor that requires grad (a leaf for gradient checks).
inline Tensor random_param(const Shape& shape, uint64_t seed, double low = -2, double high = 2,
                           DType dtype = DType::f32) {
  Tensor t = random_tensor(shape, seed, low, high, dtype);
  t.set_requires_grad(true);
  return t;
}

inline std::vector<double> host_values(const Tensor& t) {
  return t.to(Device::cpu()).to(DType::f64).raw_contiguous().to_vector<double>();
}

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs `fn` on CPU copies and CUDA copies of `inputs` (f32; those with requires_grad get
// gradients from backward with one fixed random output gradient), with every CUDA allocation
// poisoned, and requires ||cuda - cpu|| / ||cpu|| < tolerance for the output and each gradient.
inline void check_cuda_matches_cpu(const OpFn& fn, const std::vector<Tensor>& inputs, double tolerance = 1e-5) {
  auto run = [&](Device device) {
    std::vector<Tensor> copies;
    for (const Tensor& input : inputs) {
      Tensor copy = input.detach().to(device).clone();
      if (input.requires_grad()) copy.set_requires_grad(true);
      copies.push_back(copy);
    }
    Tensor out = fn(copies);
    std::vector<std::vector<double>> results{host_values(out)};
    if (out.requires_grad()) {
      const Tensor grad = random_tensor(out.shape(), 777, -1, 1, out.dtype(), Device::cpu()).to(device);
      backward(out, grad);
      for (const Tensor& copy : copies)
        if (copy.requires_grad()) results.push_back(host_values(copy.grad()));
    }
    return results;
  };
  const auto cpu_results = run(Device::cpu());
  std::vector<std::vector<double>> cuda_results;
  {
    PoisonGuard poison(Device::cuda(0));
    cuda_results = run(Device::cuda(0));
  }
  REQUIRE(cuda_results.size() == cpu_results.size());
  for (size_t k = 0; k < cpu_results.size(); ++k) {
    INFO("result " << k << (k == 0 ? " (forward output)" : " (input gradient)"));
    CHECK(relative_error(cuda_results[k], cpu_results[k]) < tolerance);
  }
}

}  // namespace tg::test
