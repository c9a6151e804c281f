// matmul on the CPU: forward against f64 loop references (all transposes, 2-D and batched, odd
// and size-1 dims, strided views, f32/f64/bf16), copy-free handling of transposed views,
// gradcheck, what the node saves, the strategy's contraction shapes, and error messages.
#include <doctest/doctest.h>

#include "autograd/gradcheck.h"
#include "core/allocator.h"
#include "ops/matmul/gemm.h"
#include "ops/matmul/matmul.h"
#include "ops/reduce.h"
#include "tests/ops/matmul/matmul_shapes.h"
#include "tests/support/op_checks.h"
#include "tests/support/recording_strategy.h"
#if TG_WITH_CUDA
#include "core/cuda/cublas_check.h"
#endif

using namespace tg;
using test::host_values;
using test::random_tensor;

namespace {

// op(a)·op(b) in f64 with plain loops; a [..., r, c] and b [..., r, c] with equal batch dims.
std::vector<double> reference_matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  const auto av = host_values(a), bv = host_values(b);
  const int64_t ra = a.size(-2), ca = a.size(-1), rb = b.size(-2), cb = b.size(-1);
  const int64_t m = trans_a ? ca : ra, k = trans_a ? ra : ca, n = trans_b ? rb : cb;
  const int64_t batch = a.numel() / std::max<int64_t>(ra * ca, 1);
  std::vector<double> out(static_cast<size_t>(batch * m * n), 0.0);
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (int64_t l = 0; l < k; ++l) {
          const double x = av[static_cast<size_t>(p * ra * ca + (trans_a ? l * ca + i : i * ca + l))];
          const double y = bv[static_cast<size_t>(p * rb * cb + (trans_b ? j * cb + l : l * cb + j))];
          sum += x * y;
        }
        out[static_cast<size_t>((p * m + i) * n + j)] = sum;
      }
  return out;
}

struct Case {
  std::vector<int64_t> batch;
  int64_t m, k, n;
};
const std::vector<Case> kCases = {{{}, 3, 5, 4},   {{}, 1, 1, 1},  {{}, 7, 1, 9},      {{}, 1, 6, 1},
                                  {{2}, 5, 6, 3},  {{2, 3}, 1, 7, 2}, {{4}, 13, 17, 1}, {{}, 33, 65, 17},
                                  {{3}, 1, 1, 5}};
const std::pair<bool, bool> kTransposes[] = {{false, false}, {true, false}, {false, true}, {true, true}};

int64_t allocations_during(const std::function<void()>& fn) {
  const int64_t before = memory_stats(Device::cpu()).allocation[0].allocated;
  fn();
  return memory_stats(Device::cpu()).allocation[0].allocated - before;
}


}  // namespace

TEST_CASE("matmul matches f64 references: every transpose, 2-D and batched, odd and size-1 dims") {
  uint64_t seed = 200;
  for (const Case& c : kCases) {
    for (const auto& [ta, tb] : kTransposes) {
      const Shape sa = test::operand_shape(c.batch, c.m, c.k, ta), sb = test::operand_shape(c.batch, c.k, c.n, tb);
      CAPTURE(sa.str());
      CAPTURE(sb.str());
      CAPTURE(ta);
      CAPTURE(tb);
      const Tensor a = random_tensor(sa, seed++), b = random_tensor(sb, seed++);
      const Tensor r = matmul(a, b, ta, tb);
      Shape expected(c.batch);
      expected.dims().insert(expected.dims().end(), {c.m, c.n});
      REQUIRE(r.shape() == expected);
      const auto reference = reference_matmul(a, b, ta, tb);
      CHECK(test::relative_error(host_values(r), reference) < 1e-6);
      const Tensor a64 = a.to(DType::f64), b64 = b.to(DType::f64);
      CHECK(test::relative_error(host_values(matmul(a64, b64, ta, tb)), reference) < 1e-13);
      // bf16 inputs: the reference uses the rounded inputs; the product accumulates in f32.
      const Tensor ah = a.to(DType::bf16), bh = b.to(DType::bf16);
      const Tensor rh = matmul(ah, bh, ta, tb);
      CHECK(rh.dtype() == DType::bf16);
      CHECK(test::relative_error(host_values(rh), reference_matmul(ah, bh, ta, tb)) < 1e-2);
    }
  }
}

TEST_CASE("matmul reads strided inputs: transposed views without a copy, other layouts copied") {
  const Tensor base = random_tensor({3, 6, 5}, 230);
  const Tensor other = random_tensor({3, 6, 4}, 231);
  // A transposed view [3, 5, 6] becomes a transpose flag: only the output is allocated.
  const Tensor at = base.raw_transpose(1, 2);
  Tensor r;
  CHECK(allocations_during([&] { r = matmul(at, other); }) == 1);
  CHECK(test::relative_error(host_values(r), reference_matmul(at, other, false, false)) < 1e-6);
  CHECK(allocations_during([&] { r = matmul(at, other.raw_transpose(1, 2), false, true); }) == 1);
  CHECK(test::relative_error(host_values(r), reference_matmul(base, other, true, false)) < 1e-6);
  // Rows with a larger stride (a column slice) are read in place too.
  const Tensor wide = random_tensor({3, 4, 9}, 232);
  const Tensor narrow = wide.raw_narrow(2, 2, 6);  // [3, 4, 6], row stride 9
  CHECK(allocations_during([&] { r = matmul(narrow, base); }) == 1);
  CHECK(test::relative_error(host_values(r), reference_matmul(narrow, base, false, false)) < 1e-6);
  // Neither rows nor columns unit-stride, and batch dims that do not flatten: copied, still right.
  const Tensor stepped = wide.raw_slice(2, 0, 9, 2);  // [3, 4, 5], column stride 2
  CHECK(allocations_during([&] { r = matmul(stepped, base, false, true); }) == 2);
  CHECK(test::relative_error(host_values(r), reference_matmul(stepped, base, false, true)) < 1e-6);
  const Tensor p = random_tensor({4, 2, 3, 5}, 233).raw_permute({1, 0, 2, 3});  // [2, 4, 3, 5]
  const Tensor q = random_tensor({2, 4, 5, 2}, 234);
  CHECK(test::relative_error(host_values(matmul(p, q)), reference_matmul(p, q, false, false)) < 1e-6);
  // A batch broadcast by expand (batch stride 0).
  const Tensor shared = random_tensor({1, 5, 6}, 235).raw_expand({3, 5, 6});
  CHECK(test::relative_error(host_values(matmul(shared, other)), reference_matmul(shared, other, false, false)) < 1e-6);
}

TEST_CASE("matmul with empty dims") {
  CHECK(host_values(matmul(zeros({3, 0}), zeros({0, 4}))) == std::vector<double>(12, 0.0));
  CHECK(matmul(zeros({2, 0, 3}), zeros({2, 3, 4})).shape() == Shape{2, 0, 4});
  CHECK(matmul(zeros({0, 3, 3}), zeros({0, 3, 4})).shape() == Shape{0, 3, 4});
}

TEST_CASE("gemm fuses a bias row into the product") {
  const Tensor a = random_tensor({2, 5, 3}, 240), b = random_tensor({2, 4, 3}, 241), bias = random_tensor({4}, 242);
  auto expected = reference_matmul(a, b, false, true);
  const auto bv = host_values(bias);
  for (size_t i = 0; i < expected.size(); ++i) expected[i] += bv[i % 4];
  CHECK(test::relative_error(host_values(gemm(a, false, b, true, bias)), expected) < 1e-6);
  const auto empty_sum = host_values(gemm(zeros({3, 0}), false, zeros({0, 4}), false, bias));
  CHECK(test::relative_error(empty_sum, std::vector<double>{bv[0], bv[1], bv[2], bv[3], bv[0], bv[1], bv[2], bv[3],
                                                            bv[0], bv[1], bv[2], bv[3]}) == 0);
}

TEST_CASE("gemm of bf16 operands into f32: the f32 accumulator, unrounded") {
  const Tensor a = random_tensor({2, 9, 5}, 243, -2, 2, DType::bf16), b = random_tensor({2, 5, 7}, 244, -2, 2, DType::bf16);
  const Tensor wide = gemm(a, false, b, false, Tensor(), DType::f32);
  CHECK(wide.dtype() == DType::f32);
  // The CPU widens bf16 operands to f32 matrices: the f32 product of the same numbers.
  CHECK(host_values(wide) == host_values(gemm(a.to(DType::f32), false, b.to(DType::f32), false)));
  CHECK(host_values(gemm(a, false, b, false)) != host_values(wide));  // the bf16 product is rounded
  CHECK_THROWS_WITH_AS(gemm(random_tensor({3, 4}, 245), false, random_tensor({4, 2}, 246), false, Tensor(), DType::bf16),
                       "matmul: a product of f32 operands is computed in f32, not bf16", TypeError);
  const Tensor bias = random_tensor({7}, 247, -2, 2, DType::bf16);
  CHECK_THROWS_WITH_AS(gemm(a, false, b, false, bias, DType::f32),
                       "matmul: a product of bf16 operands with a bias is computed in bf16, not f32", TypeError);
}

TEST_CASE("gemm_with_row_sums: the product and op(a)'s row sums, both transposes of a") {
  uint64_t seed = 248;
  for (bool trans_a : {false, true}) {
    for (bool trans_b : {false, true}) {
      CAPTURE(trans_a);
      CAPTURE(trans_b);
      const Tensor a = random_tensor(trans_a ? Shape{11, 6} : Shape{6, 11}, seed++);
      const Tensor b = random_tensor(trans_b ? Shape{4, 11} : Shape{11, 4}, seed++);
      const ProductAndRowSums r = gemm_with_row_sums(a, trans_a, b, trans_b);
      CHECK(host_values(r.product) == host_values(gemm(a, trans_a, b, trans_b)));
      const auto av = host_values(a);
      std::vector<double> sums(6, 0.0);
      for (int64_t m = 0; m < 6; ++m)
        for (int64_t k = 0; k < 11; ++k) sums[static_cast<size_t>(m)] += av[static_cast<size_t>(trans_a ? k * 6 + m : m * 11 + k)];
      CHECK(r.row_sums.shape() == Shape{6});
      CHECK(test::relative_error(host_values(r.row_sums), sums) < 1e-6);
    }
  }
  // bf16 operands into f32: both results in f32.
  const Tensor g = random_tensor({13, 5}, seed++, -2, 2, DType::bf16), x = random_tensor({13, 3}, seed++, -2, 2, DType::bf16);
  const ProductAndRowSums wide = gemm_with_row_sums(g, true, x, false, DType::f32);
  CHECK(wide.product.dtype() == DType::f32);
  CHECK(host_values(wide.row_sums) == host_values(sum_to(g, {5}, DType::f32)));
  CHECK_THROWS_WITH_AS(gemm_with_row_sums(random_tensor({2, 3, 4}, seed), false, random_tensor({2, 4, 2}, seed + 1), false),
                       "gemm_with_row_sums: expected 2-D operands, got shapes [2, 3, 4] and [2, 4, 2]", ShapeError);
}

TEST_CASE("gradcheck: matmul, every transpose, 2-D and batched") {
  const std::vector<Case> cases = {{{}, 3, 4, 2}, {{2}, 2, 3, 4}, {{2, 1}, 1, 3, 2}, {{}, 1, 1, 1}};
  uint64_t seed = 250;
  for (const Case& c : cases) {
    for (const auto& [ta, tb] : kTransposes) {
      Tensor a = random_tensor(test::operand_shape(c.batch, c.m, c.k, ta), seed++, -2, 2, DType::f64);
      Tensor b = random_tensor(test::operand_shape(c.batch, c.k, c.n, tb), seed++, -2, 2, DType::f64);
      CAPTURE(a.shape().str());
      CAPTURE(b.shape().str());
      CAPTURE(ta);
      CAPTURE(tb);
      a.set_requires_grad(true);
      b.set_requires_grad(true);
      const bool trans_a = ta, trans_b = tb;
      const auto fn = [&](const std::vector<Tensor>& in) { return matmul(in[0], in[1], trans_a, trans_b); };
      const auto both = gradcheck(fn, {a, b});
      CHECK_MESSAGE(both.ok, both.message);
      b.set_requires_grad(false);  // only dA: the node keeps B alone
      const auto only_a = gradcheck(fn, {a, b});
      CHECK_MESSAGE(only_a.ok, only_a.message);
      b.set_requires_grad(true);
      a.set_requires_grad(false);
      const auto only_b = gradcheck(fn, {a, b});
      CHECK_MESSAGE(only_b.ok, only_b.message);
    }
  }
}

TEST_CASE("matmul saves only the operand each needed gradient uses, without copying it") {
  Tensor a = random_tensor({2, 3, 4}, 260), b = random_tensor({2, 4, 40}, 261);
  const size_t a_bytes = a.storage()->nbytes(), b_bytes = b.storage()->nbytes();
  a.set_requires_grad(true);
  Tensor r;
  CHECK(allocations_during([&] { r = matmul(a, b); }) == 1);  // the output only
  CHECK(r.grad_fn()->name() == "MatmulBackward");
  CHECK(r.grad_fn()->saved_bytes() == b_bytes);  // dA = dR·Bᵀ needs B only
  a.set_requires_grad(false);
  b.set_requires_grad(true);
  CHECK(matmul(a, b).grad_fn()->saved_bytes() == a_bytes);  // dB = Aᵀ·dR needs A only
  a.set_requires_grad(true);
  r = matmul(a, b);
  CHECK(r.grad_fn()->saved_bytes() == a_bytes + b_bytes);
  backward(r, ones(r.shape()));
  CHECK(r.grad_fn()->saved_bytes() == 0);  // released after its backward
  CHECK_THROWS_WITH_AS(backward(r, ones(r.shape())),
                       "backward through MatmulBackward a second time: its saved tensors were freed after the "
                       "first backward; pass retain_graph=true to the first backward to keep them",
                       ValueError);
  {
    NoGradGuard no_grad;
    CHECK_FALSE(matmul(a, b).requires_grad());
  }
}

TEST_CASE("matmul hands the strategy X = Bᵀ or A as [batch, K, D] and contracts with G = dRᵀ or dR") {
  test::RecordingStrategy strategy;
  Tensor a = random_tensor({2, 3, 5, 4}, 270), b = random_tensor({2, 3, 6, 4}, 271);  // R = A·Bᵀ: [2, 3, 5, 6]
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  const Tensor r = matmul(a, b, false, true, &strategy, &strategy);
  // dA contracts over n with X = Bᵀ [n, K] (here b itself); dB over m with X = A [m, K].
  REQUIRE(strategy.saved.size() == 2);
  CHECK(strategy.saved[0] == Shape{6, 6, 4});
  CHECK(strategy.saved[1] == Shape{6, 5, 4});
  const Tensor g = random_tensor(r.shape(), 272);
  backward(r, g);
  REQUIRE(strategy.contracted.size() == 2);
  CHECK(strategy.contracted[0] == Shape{6, 6, 5});  // dRᵀ
  CHECK(strategy.contracted[1] == Shape{6, 5, 6});  // dR
  CHECK(test::relative_error(host_values(a.grad()), host_values(matmul(g, b))) < 1e-6);
  CHECK(test::relative_error(host_values(b.grad()), host_values(matmul(g, a, true, false))) < 1e-6);
}

TEST_CASE("matmul errors name both operands") {
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({4, 5})),
                       "matmul: inner dimensions differ: a is [2, 3] (K = 3), b is [4, 5] (K = 4)", ShapeError);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({4, 5}), true, true),
                       "matmul: inner dimensions differ: a is [2, 3] (transposed, K = 2), b is [4, 5] "
                       "(transposed, K = 5)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3, 4}), zeros({3, 4, 5})),
                       "matmul: batch dims differ: a is [2, 3, 4] (batch [2]), b is [3, 4, 5] (batch [3]); they "
                       "must be identical (no broadcasting)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(zeros({3, 4}), zeros({2, 4, 5})),
                       "matmul: batch dims differ: a is [3, 4] (batch []), b is [2, 4, 5] (batch [2]); they must "
                       "be identical (no broadcasting)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(zeros({3}), zeros({3, 2})),
                       "matmul: a must have at least 2 dims ([..., M, K]), got shape [3]", ShapeError);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({3})),
                       "matmul: b must have at least 2 dims ([..., K, N]), got shape [3]", ShapeError);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({3, 2}, DType::f64)),
                       "matmul: expected all tensors of dtype f32, got f64", TypeError);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}, DType::i32), zeros({3, 2}, DType::i32)),
                       "matmul: expected a floating dtype, got i32", TypeError);
}

#if TG_WITH_CUDA
// The check behind every cuBLAS call of the matmul kernels; it needs no GPU to run.
TEST_CASE("TG_CUBLAS_CHECK throws BackendError naming the status, the call and file:line") {
  std::string message;
  const int line = __LINE__ + 2;
  try {
    TG_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE);
  } catch (const BackendError& error) {
    message = error.what();
  }
  CHECK(message == std::string("cuBLAS error 7 (") + cublasGetStatusString(CUBLAS_STATUS_INVALID_VALUE) +
                       ") in CUBLAS_STATUS_INVALID_VALUE at " + __FILE__ + ":" + std::to_string(line));
  CHECK_NOTHROW(TG_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS));
}
#endif

TEST_CASE("the CUDA GEMM backend: names, and the CPU ignores it") {
  CHECK(parse_cuda_gemm_backend("auto") == CudaGemmBackend::automatic);
  CHECK(parse_cuda_gemm_backend("cublas") == CudaGemmBackend::cublas);
  CHECK(parse_cuda_gemm_backend("cublaslt") == CudaGemmBackend::cublaslt);
  CHECK_THROWS_WITH_AS(parse_cuda_gemm_backend("lt"),
                       "--gemm-backend: unknown value 'lt' (expected auto, cublas, cublaslt)", ValueError);
  CHECK(cuda_gemm_backend() == CudaGemmBackend::automatic);
  const Tensor a = test::random_tensor({3, 5}, 90), b = test::random_tensor({5, 4}, 91);
  const std::vector<double> automatic = test::host_values(gemm(a, false, b, false));
  set_cuda_gemm_backend(CudaGemmBackend::cublaslt);
  CHECK(test::host_values(gemm(a, false, b, false)) == automatic);
  set_cuda_gemm_backend(CudaGemmBackend::automatic);
}

TEST_CASE("the CUDA bias-gradient choice and GEMM autotuning: names, defaults, and the CPU ignores them") {
  CHECK(parse_cuda_bias_gradient("auto") == CudaBiasGradient::automatic);
  CHECK(parse_cuda_bias_gradient("epilogue") == CudaBiasGradient::epilogue);
  CHECK(parse_cuda_bias_gradient("column-sums") == CudaBiasGradient::column_sums);
  CHECK_THROWS_WITH_AS(parse_cuda_bias_gradient("bgradb"),
                       "--bias-gradient: unknown value 'bgradb' (expected auto, epilogue, column-sums)", ValueError);
  CHECK(cuda_bias_gradient() == CudaBiasGradient::automatic);
  CHECK_FALSE(cuda_gemm_autotune());
  const Tensor g = test::random_tensor({6, 5}, 92), x = test::random_tensor({6, 4}, 93);
  const ProductAndRowSums plain = gemm_with_row_sums(g, true, x, false);
  set_cuda_bias_gradient(CudaBiasGradient::epilogue);
  set_cuda_gemm_autotune(true);
  CHECK(cuda_bias_gradient() == CudaBiasGradient::epilogue);
  CHECK(cuda_gemm_autotune());
  const ProductAndRowSums set = gemm_with_row_sums(g, true, x, false);
  CHECK(test::host_values(set.product) == test::host_values(plain.product));
  CHECK(test::host_values(set.row_sums) == test::host_values(plain.row_sums));
  set_cuda_bias_gradient(CudaBiasGradient::automatic);
  set_cuda_gemm_autotune(false);
}

TEST_CASE("the GEMM SM margin: automatic by default, counts 0 to 64, anything else refused, the CPU ignores it") {
  CHECK(cuda_gemm_sm_margin() == kAutomaticSmMargin);
  const Tensor a = test::random_tensor({6, 5}, 94), b = test::random_tensor({5, 4}, 95);
  const std::vector<double> plain = test::host_values(gemm(a, false, b, false));
  set_cuda_gemm_sm_margin(8);
  CHECK(cuda_gemm_sm_margin() == 8);
  CHECK(test::host_values(gemm(a, false, b, false)) == plain);
  CHECK_THROWS_WITH_AS(set_cuda_gemm_sm_margin(65), "GEMM SM margin: expected 0 to 64 or automatic, got 65",
                       ValueError);
  CHECK_THROWS_WITH_AS(set_cuda_gemm_sm_margin(-2), "GEMM SM margin: expected 0 to 64 or automatic, got -2",
                       ValueError);
  CHECK(cuda_gemm_sm_margin() == 8);
  set_cuda_gemm_sm_margin(kAutomaticSmMargin);
}
