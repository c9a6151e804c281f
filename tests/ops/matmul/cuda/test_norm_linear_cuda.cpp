// norm_linear on CUDA against the CPU: the output and all five gradients, f32, bf16 casts and
// mixed precision, at a ViT width (768: the LayerNorm's 16-byte row kernels).
#include <doctest/doctest.h>

#include "ops/matmul/norm_linear.h"
#include "ops/shape_ops.h"
#include "tests/support/op_checks.h"

using namespace tg;

TEST_CASE("norm_linear: CUDA matches CPU, f32, bf16 and mixed precision") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    const Tensor x = test::random_param({4, 65, 768}, 40, -3, 3), nw = test::random_param({768}, 41, 0.5, 2),
                 nb = test::random_param({768}, 42), w = test::random_param({384, 768}, 43),
                 b = test::random_param({384}, 44);
    test::check_cuda_matches_cpu(
        [dtype](const std::vector<Tensor>& in) {
          return norm_linear(in[0], in[1], in[2], 1e-6, dtype, cast(in[3], dtype), cast(in[4], dtype));
        },
        {x, nw, nb, w, b}, dtype == DType::f32 ? 1e-5 : 2e-2);
  }
  // Mixed precision: the f32 parameters themselves, their gradients from the f32 accumulator.
  const Tensor x = test::random_param({4, 65, 768}, 45, -3, 3), nw = test::random_param({768}, 46, 0.5, 2),
               nb = test::random_param({768}, 47), w = test::random_param({384, 768}, 48),
               b = test::random_param({384}, 49);
  test::check_cuda_matches_cpu(
      [](const std::vector<Tensor>& in) { return norm_linear(in[0], in[1], in[2], 1e-6, DType::bf16, in[3], in[4]); },
      {x, nw, nb, w, b}, 2e-2);
}
