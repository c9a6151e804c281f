// Saved tensors are released right after their node's backward: allocated bytes return to the
// parameter + gradient level (CPU suite on the host allocator, CUDA suite on cuda:0).
#include <doctest/doctest.h>

#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tests/support/op_checks.h"

using namespace tg;

TEST_CASE("after backward only parameters and their gradients stay allocated") {
  const Device dev = test::test_device();
  CachingAllocator& alloc = allocator_for(dev);
  // 256 x 1024 f32 = 1 MiB per tensor: large-pool blocks, exact byte counts.
  constexpr int64_t kMiB = 1024 * 1024;
  Tensor w = test::random_tensor({256, 1024}, 3, -1, 1, DType::f32, dev);
  w.set_requires_grad(true);
  const Tensor x = test::random_tensor({256, 1024}, 4, -1, 1, DType::f32, dev);
  const int64_t base = alloc.stats().allocated_bytes[0].current;  // w and x
  int64_t during = 0;
  {
    // w * x is saved by nobody (its operands already exist; tanh saves its output), so it is
    // freed at once; t = tanh(.) and u = t * t are saved (by mul and gelu), h is held here.
    const Tensor t = tanh(w * x);
    Tensor h = gelu(t * t);
    const Tensor loss = sum(h);  // one 512 B block
    during = alloc.stats().allocated_bytes[0].current;
    CHECK(during == base + 3 * kMiB + 512);
    backward(loss);
    // Saved u is gone; t stays only because this scope still holds it. Added: w.grad.
    CHECK(alloc.stats().allocated_bytes[0].current == base + 3 * kMiB + 512);
  }
  CHECK(alloc.stats().allocated_bytes[0].current == base + kMiB);  // parameters + w.grad
  CHECK(w.grad().numel() == 256 * 1024);
}
