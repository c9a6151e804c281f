// matmul and linear on CUDA against the CPU: ViT-like sizes, every transpose, odd and size-1
// dims, strided inputs; f32 (TF32 off) and f64 within 1e-5, bf16 and TF32 within 1e-2.
#include <doctest/doctest.h>

#include "core/allocator.h"
#include "ops/matmul/gemm.h"
#include "ops/matmul/linear.h"
#include "ops/matmul/linear_gelu.h"
#include "ops/matmul/matmul.h"
#include "ops/precision.h"
#include "tests/ops/matmul/matmul_shapes.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::check_cuda_matches_cpu;
using test::random_tensor;

namespace {

Tensor param(const Shape& shape, uint64_t seed, DType dtype = DType::f32) {
  return test::random_param(shape, seed, -1, 1, dtype);
}

// TF32 on while alive; the previous policy comes back even when a check throws.
PrecisionPolicy tf32_policy() {
  PrecisionPolicy policy;
  policy.allow_tf32 = true;
  return policy;
}

const std::pair<bool, bool> kTransposes[] = {{false, false}, {true, false}, {false, true}, {true, true}};

Tensor matmul_nn(const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }
Tensor matmul_nt(const std::vector<Tensor>& in) { return matmul(in[0], in[1], false, true); }
Tensor linear_bias(const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); }
Tensor linear_no_bias(const std::vector<Tensor>& in) { return linear(in[0], in[1]); }

struct MatmulCase {
  std::vector<int64_t> batch;
  int64_t m, k, n;
};

// matmul on CUDA against the CPU for every case, transpose pair and dtype (bf16 within 1e-2).
void check_every_transpose(const std::vector<MatmulCase>& cases, const std::vector<DType>& dtypes, uint64_t seed) {
  for (const MatmulCase& c : cases) {
    for (const auto& [ta, tb] : kTransposes) {
      const bool trans_a = ta, trans_b = tb;
      const auto fn = [=](const std::vector<Tensor>& in) { return matmul(in[0], in[1], trans_a, trans_b); };
      for (DType dtype : dtypes) {
        const Tensor a = param(test::operand_shape(c.batch, c.m, c.k, ta), seed++, dtype);
        const Tensor b = param(test::operand_shape(c.batch, c.k, c.n, tb), seed++, dtype);
        CAPTURE(a.shape().str());
        CAPTURE(b.shape().str());
        CAPTURE(trans_a);
        CAPTURE(trans_b);
        CAPTURE(dtype_name(dtype));
        check_cuda_matches_cpu(fn, {a, b}, dtype == DType::bf16 ? 1e-2 : 1e-5);
      }
    }
  }
}

}  // namespace

TEST_CASE("matmul on attention sizes: CUDA matches CPU") {
  REQUIRE_FALSE(precision_policy().allow_tf32);
  const Tensor q = param({12, 65, 64}, 400), k = param({12, 65, 64}, 401), kt = param({12, 64, 65}, 402);
  const Tensor p = param({12, 65, 65}, 403), v = param({12, 65, 64}, 404);
  check_cuda_matches_cpu(matmul_nn, {q, kt});  // scores, K given as [12, 64, 65]
  check_cuda_matches_cpu(matmul_nt, {q, k});   // scores Q·Kᵀ with K as [12, 65, 64]
  check_cuda_matches_cpu(matmul_nn, {p, v});   // context P·V
  check_cuda_matches_cpu(matmul_nn, {param({4, 3, 65, 64}, 405), param({4, 3, 64, 65}, 406)});  // [B, H, T, d]
}

TEST_CASE("matmul, every transpose, odd and size-1 dims: CUDA matches CPU in f32 and f64") {
  check_every_transpose({{{}, 1, 1, 1}, {{3}, 1, 7, 1}, {{}, 5, 1, 3}, {{2, 3}, 33, 17, 9}, {{}, 197, 192, 5}},
                        {DType::f32, DType::f64}, 410);
}

TEST_CASE("matmul on strided inputs: CUDA matches CPU, transposed views without a copy") {
  const Tensor base = random_tensor({12, 64, 65}, 420), other = random_tensor({12, 64, 33}, 421);
  const Tensor wide = random_tensor({12, 65, 70}, 422);
  // Transposed view: a transpose flag, not a copy (one allocation: the output).
  {
    const Tensor a = base.to(Device::cuda(0)).raw_transpose(1, 2), b = other.to(Device::cuda(0));
    const int64_t before = memory_stats(Device::cuda(0)).allocation[0].allocated;
    const Tensor r = matmul(a, b);
    CHECK(memory_stats(Device::cuda(0)).allocation[0].allocated - before == 1);
    CHECK(test::relative_error(test::host_values(r), test::host_values(matmul(base.raw_transpose(1, 2), other))) < 1e-5);
  }
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return matmul(in[0].raw_transpose(1, 2), in[1]); },
                         {base, other});
  // Rows with a larger stride (column slice; also an odd element offset).
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return matmul(in[0].raw_narrow(2, 3, 64), in[1]); },
                         {wide, other});
  // Column stride 2 (copied) and a batch broadcast by expand (batch stride 0).
  check_cuda_matches_cpu(
      [](const std::vector<Tensor>& in) { return matmul(in[0].raw_slice(2, 0, 70, 2), in[1], false, true); },
      {wide, random_tensor({12, 9, 35}, 423)});
  check_cuda_matches_cpu(
      [](const std::vector<Tensor>& in) { return matmul(in[0].raw_expand({12, 65, 64}), in[1]); },
      {random_tensor({1, 65, 64}, 424), other});
}

TEST_CASE("linear on ViT sizes, with and without bias: CUDA matches CPU") {
  REQUIRE_FALSE(precision_policy().allow_tf32);
  const Tensor x = param({4, 65, 192}, 430);
  const Tensor qkv_w = param({576, 192}, 431), qkv_b = param({576}, 432);
  check_cuda_matches_cpu(linear_bias, {x, qkv_w, qkv_b});
  check_cuda_matches_cpu(linear_no_bias, {x, qkv_w});
  const Tensor h = param({4, 65, 768}, 433), fc2_w = param({192, 768}, 434), fc2_b = param({192}, 435);
  check_cuda_matches_cpu(linear_bias, {h, fc2_w, fc2_b});
  // Odd sizes, a 1-D input, f64 (no cuBLASLt bias epilogue: the bias goes in through C).
  check_cuda_matches_cpu(linear_bias, {param({3, 7, 5}, 436), param({9, 5}, 437), param({9}, 438)});
  check_cuda_matches_cpu(linear_bias, {param({5}, 439), param({1, 5}, 440), param({1}, 441)});
  const DType f64 = DType::f64;
  check_cuda_matches_cpu(linear_bias, {param({2, 33, 17}, 442, f64), param({13, 17}, 443, f64), param({13}, 444, f64)});
  // Input rows with a stride and an odd offset: cuBLASLt must pick a kernel for that alignment.
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return linear(in[0].raw_narrow(1, 1, 191), in[1], in[2]); },
                         {random_tensor({260, 193}, 445), param({576, 191}, 446), param({576}, 447)});
}

TEST_CASE("bf16 matmul and linear: CUDA matches CPU within 1e-2") {
  const DType bf = DType::bf16;
  check_cuda_matches_cpu(matmul_nt, {param({12, 65, 64}, 450, bf), param({12, 65, 64}, 451, bf)}, 1e-2);
  check_cuda_matches_cpu(matmul_nn, {param({12, 65, 65}, 452, bf), param({12, 65, 64}, 453, bf)}, 1e-2);
  check_cuda_matches_cpu(linear_bias, {param({4, 65, 192}, 454, bf), param({576, 192}, 455, bf), param({576}, 456, bf)},
                         1e-2);
  check_cuda_matches_cpu(linear_no_bias, {param({4, 65, 192}, 457, bf), param({192, 192}, 458, bf)}, 1e-2);
  // Mixed precision: f32 parameters, whose gradients come from the f32 accumulator (and db from
  // the GEMM's epilogue) — as close to the CPU as f32 sums of the same bf16 products are.
  check_cuda_matches_cpu(linear_bias, {param({4, 65, 192}, 459, bf), param({576, 192}, 455), param({576}, 456)}, 1e-2);
  check_cuda_matches_cpu(
      [](const std::vector<Tensor>& in) { return linear_gelu(in[0], in[1], in[2]); },
      {param({2, 65, 192}, 448, bf), test::random_param({768, 192}, 449, -0.1, 0.1), param({768}, 447)}, 1e-2);
}

namespace {
// The process-wide GEMM settings (ops/matmul/gemm.h) come back when a test ends, even when a
// check throws.
struct GemmSettingsGuard {
  CudaGemmBackend backend = cuda_gemm_backend();
  bool autotune = cuda_gemm_autotune();
  CudaBiasGradient bias = cuda_bias_gradient();
  int sm_margin = cuda_gemm_sm_margin();
  ~GemmSettingsGuard() {
    set_cuda_gemm_sm_margin(sm_margin);
    set_cuda_gemm_backend(backend);
    set_cuda_gemm_autotune(autotune);
    set_cuda_bias_gradient(bias);
  }
};
}  // namespace

TEST_CASE("gemm_with_row_sums on CUDA (the BGRADB epilogue, the column sums, autotuned) matches the CPU") {
  struct Case {
    int64_t rows, e, d;  // G [rows, e], X [rows, d]: dW [e, d], db [e]
  };
  const GemmSettingsGuard guard;
  uint64_t seed = 470;
  for (const auto& [how, autotune] : {std::pair{CudaBiasGradient::epilogue, false},
                                      std::pair{CudaBiasGradient::column_sums, false},
                                      std::pair{CudaBiasGradient::epilogue, true}}) {
    set_cuda_bias_gradient(how);
    set_cuda_gemm_autotune(autotune);
    CAPTURE(static_cast<int>(how));
    CAPTURE(autotune);
    for (const Case& c : {Case{394, 576, 192}, Case{130, 768, 192}, Case{7, 5, 3}, Case{1, 9, 4}}) {
      for (const auto& [operands, out] : {std::pair{DType::f32, DType::f32}, std::pair{DType::bf16, DType::bf16},
                                          std::pair{DType::bf16, DType::f32}}) {
        CAPTURE(c.rows);
        CAPTURE(c.e);
        CAPTURE(dtype_name(operands));
        CAPTURE(dtype_name(out));
        // Autotuned plans are made for shapes no earlier case planned: other rows.
        const int64_t rows = autotune ? c.rows + 3 : c.rows;
        const Tensor g = random_tensor({rows, c.e}, seed++, -1, 1, operands);
        const Tensor x = random_tensor({rows, c.d}, seed++, -1, 1, operands);
        const ProductAndRowSums cpu = gemm_with_row_sums(g, true, x, false, out);
        const ProductAndRowSums gpu =
            gemm_with_row_sums(g.to(Device::cuda(0)), true, x.to(Device::cuda(0)), false, out);
        REQUIRE(gpu.product.dtype() == out);
        REQUIRE(gpu.row_sums.dtype() == out);
        const double tolerance = out == DType::bf16 ? 1e-2 : 1e-5;
        CHECK(test::relative_error(test::host_values(gpu.product), test::host_values(cpu.product)) < tolerance);
        CHECK(test::relative_error(test::host_values(gpu.row_sums), test::host_values(cpu.row_sums)) < tolerance);
        // A second call of the same shape runs the plan the first one made, tuned or not.
        const ProductAndRowSums again =
            gemm_with_row_sums(g.to(Device::cuda(0)), true, x.to(Device::cuda(0)), false, out);
        CHECK(test::relative_error(test::host_values(again.product), test::host_values(cpu.product)) < tolerance);
      }
    }
  }
}

TEST_CASE("TF32 on: CUDA matches CPU within 1e-2, and the switch is restored") {
  REQUIRE_FALSE(precision_policy().allow_tf32);
  const Tensor x = param({4, 65, 192}, 460), w = param({576, 192}, 461), b = param({576}, 462);
  const Tensor q = param({12, 65, 64}, 463), k = param({12, 65, 64}, 464);
  {
    PrecisionGuard tf32(tf32_policy());
    check_cuda_matches_cpu(linear_bias, {x, w, b}, 1e-2);
    check_cuda_matches_cpu(matmul_nt, {q, k}, 1e-2);
    // TF32 rounds the inputs to 10 mantissa bits: the product should differ from f32 by more
    // than f32 rounding. A warning only: cuBLAS is allowed, not obliged, to use TF32.
    const Tensor y = matmul(q.detach().to(Device::cuda(0)), k.detach().to(Device::cuda(0)), false, true);
    const Tensor y_cpu = matmul(q.detach(), k.detach(), false, true);
    WARN(test::relative_error(test::host_values(y), test::host_values(y_cpu)) > 1e-6);
  }
  CHECK_FALSE(precision_policy().allow_tf32);
}

TEST_CASE("linear_gelu: CUDA matches CPU") {
  Tensor x = test::random_tensor({4, 65, 192}, 71), w = test::random_tensor({768, 192}, 72, -0.1, 0.1),
         b = test::random_tensor({768}, 73);
  for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
  test::check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return linear_gelu(in[0], in[1], in[2]); }, {x, w, b});
}

TEST_CASE("every GEMM backend (cuBLAS, cuBLASLt, autotuned cuBLASLt) matches the CPU: every transpose, batched, f32, "
          "bf16 and f64") {
  const GemmSettingsGuard guard;
  uint64_t seed = 480;
  for (const auto& [backend, autotune] : {std::pair{CudaGemmBackend::cublas, false},
                                          std::pair{CudaGemmBackend::cublaslt, false},
                                          std::pair{CudaGemmBackend::cublas, true}}) {  // autotune: cuBLASLt
    set_cuda_gemm_backend(backend);
    set_cuda_gemm_autotune(autotune);
    CAPTURE(static_cast<int>(backend));
    CAPTURE(autotune);
    // Odd sizes, the attention's batched [65 x 64]·[64 x 65], and a linear's backward.
    check_every_transpose({{{}, 5, 1, 3}, {{2, 3}, 33, 17, 9}, {{12}, 65, 64, 65}, {{}, 130, 768, 192}},
                          {DType::f32, DType::bf16, DType::f64}, seed);
    seed += 1000;
    // Through C: f64 has no cuBLASLt bias epilogue, so its bias is written into C and the
    // product accumulated onto it.
    check_cuda_matches_cpu(linear_bias, {param({2, 33, 17}, seed++, DType::f64), param({13, 17}, seed++, DType::f64),
                                         param({13}, seed++, DType::f64)});
  }
}

TEST_CASE("GEMMs with an SM margin (cuBLAS and cuBLASLt, plain and with bias) give the results of all SMs") {
  const GemmSettingsGuard guard;
  const Device kCuda = Device::cuda(0);
  const Tensor a = test::random_tensor({4, 300, 96}, 610), w = test::random_tensor({160, 96}, 611);
  const Tensor bias = test::random_tensor({160}, 612);
  for (const CudaGemmBackend backend : {CudaGemmBackend::cublas, CudaGemmBackend::cublaslt}) {
    CAPTURE(static_cast<int>(backend));
    set_cuda_gemm_backend(backend);
    std::vector<std::vector<double>> results;
    for (const int margin : {0, 4, 64}) {
      set_cuda_gemm_sm_margin(margin);
      results.push_back(test::host_values(linear(a.to(kCuda), w.to(kCuda), bias.to(kCuda))));
    }
    CHECK(test::relative_error(results[1], results[0]) < 1e-5);
    CHECK(test::relative_error(results[2], results[0]) < 1e-5);
  }
}
