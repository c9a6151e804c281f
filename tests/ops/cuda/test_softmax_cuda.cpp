// softmax and log_softmax on CUDA against the CPU, on row lengths that take each kernel path:
// a warp per row with every register tile (<= 32, 128, 512, 1024 columns) and a block per row.
#include <doctest/doctest.h>

#include "ops/softmax.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::check_cuda_matches_cpu;
using test::random_tensor;

TEST_CASE("softmax and log_softmax: CUDA matches CPU on every row layout") {
  const std::vector<Shape> shapes = {{3, 1}, {7, 10}, {2, 5, 33}, {64, 100}, {4, 3, 197}, {9, 1000}, {5, 1024},
                                     {3, 1025}, {6, 5000}, {2, 1, 20000}, {3000, 17}};
  uint64_t seed = 600;
  for (const Shape& shape : shapes) {
    CAPTURE(shape.str());
    Tensor x = random_tensor(shape, seed++, -6, 6);
    x.set_requires_grad(true);
    check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return softmax(in[0]); }, {x});
    check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {x});
  }
}

TEST_CASE("softmax on CUDA: strided input, bf16, and -inf entries") {
  Tensor x = random_tensor({40, 24}, 650);
  x.set_requires_grad(true);
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return softmax(in[0].raw_transpose(0, 1)); }, {x});
  const Tensor h = random_tensor({8, 300}, 651);
  CHECK(test::relative_error(test::host_values(softmax(h.to(DType::bf16).to(Device::cuda(0)))),
                             test::host_values(softmax(h))) < 1e-2);
  const Tensor masked = from_vector<float>({1, -INFINITY, 2, -INFINITY, -INFINITY, 0}, {2, 3});
  const auto on_cuda = softmax(masked.to(Device::cuda(0))).to_vector<float>();
  CHECK(on_cuda[1] == 0.0f);
  CHECK(on_cuda[3] == 0.0f);
  CHECK(on_cuda[4] == 0.0f);
  CHECK(on_cuda[5] == 1.0f);
  CHECK(test::relative_error(on_cuda, softmax(masked).to_vector<float>()) < 1e-6);
}
