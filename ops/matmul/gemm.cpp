// gemm: shape checks, operand layouts for BLAS and the precision policy, then the device kernel.
#include "ops/matmul/gemm.h"

#include <atomic>

#include "core/side_work.h"
#include "ops/dispatch.h"
#include "ops/matmul/gemm_kernels.h"
#include "ops/precision.h"
#include "ops/reduce.h"

namespace tg {

namespace {

std::atomic<CudaGemmBackend> g_cuda_gemm_backend{CudaGemmBackend::automatic};
std::atomic<bool> g_cuda_gemm_autotune{false};
std::atomic<CudaBiasGradient> g_cuda_bias_gradient{CudaBiasGradient::automatic};
std::atomic<int> g_cuda_gemm_sm_margin{kAutomaticSmMargin};

// The margin the GEMMs leave now: automatic is one SM per side lane once side work has run.
int resolved_sm_margin() {
  const int margin = g_cuda_gemm_sm_margin.load();
  if (margin != kAutomaticSmMargin) return margin;
  return side_work_started() ? side_work_lanes() : 0;
}

// What the policy and the process-wide settings allow a GEMM on `operands`.
GemmMath gemm_math(DType operands) {
  const CudaGemmBackend backend = g_cuda_gemm_backend.load();
  const bool autotune = g_cuda_gemm_autotune.load();
  return {precision_policy().allow_tf32,
          autotune || backend == CudaGemmBackend::cublaslt ||
              (backend == CudaGemmBackend::automatic && operands == DType::f32),
          autotune, resolved_sm_margin()};
}

bool bias_gradient_in_epilogue() { return g_cuda_bias_gradient.load() == CudaBiasGradient::epilogue; }

Shape leading_dims(const Tensor& x) {
  return Shape(std::vector<int64_t>(x.shape().begin(), x.shape().end() - 2));
}

// A GEMM operand: [batch, rows, cols] with unit-stride rows, used as op(matrix).
struct GemmOperand {
  Tensor matrix;
  bool trans;
};

// `x` [..., r, c] as a GEMM operand. Rows that are unit-stride are read in place; a transposed
// view of such a matrix is passed as that matrix with `trans` flipped. Only other layouts, and
// batch dims that do not flatten to one stride, are copied.
GemmOperand gemm_operand(const Tensor& x, bool trans, int64_t batch) {
  const int64_t r = x.size(-2), c = x.size(-1);
  const Tensor x3 = x.raw_reshape({batch, r, c});
  const int64_t sb = x3.stride(0), sr = x3.stride(1), sc = x3.stride(2);
  // The stride of a size-1 dim is arbitrary: BLAS only needs it to be at least the row length.
  if ((c == 1 || sc == 1) && (r == 1 || sr >= c))
    return {x3.as_strided({batch, r, c}, {sb, r == 1 ? c : sr, 1}, x3.offset()), trans};
  if ((r == 1 || sr == 1) && (c == 1 || sc >= r))
    return {x3.as_strided({batch, c, r}, {sb, c == 1 ? r : sc, 1}, x3.offset()), !trans};
  return {x3.raw_contiguous(), trans};
}

// The product in the policy's GEMM dtype, when it asks for one other than the operands': the
// operands rounded to it, the product computed there and returned in the operands' dtype.
Tensor gemm_in(DType compute, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias) {
  const DType dtype = a.dtype();
  PrecisionPolicy same = precision_policy();
  same.gemm_dtype.reset();
  PrecisionGuard guard(same);
  return gemm(a.to(compute), trans_a, b.to(compute), trans_b, bias.defined() ? bias.to(compute) : Tensor())
      .to(dtype);
}

// The result dtype of a GEMM on `operands` asked for `out_dtype` (gemm.h); TypeError otherwise.
DType gemm_out_dtype(DType operands, std::optional<DType> out_dtype, bool has_bias) {
  const DType out = out_dtype.value_or(operands);
  const bool may_widen = operands == DType::bf16 && !has_bias;
  TG_CHECK(out == operands || (may_widen && out == DType::f32), TypeError, "matmul: a product of ",
           dtype_name(operands), " operands", has_bias ? " with a bias" : "", " is computed in ", dtype_name(operands),
           may_widen ? " or f32" : "", ", not ", dtype_name(out));
  return out;
}

}  // namespace

void set_cuda_gemm_backend(CudaGemmBackend backend) { g_cuda_gemm_backend.store(backend); }

CudaGemmBackend cuda_gemm_backend() { return g_cuda_gemm_backend.load(); }

CudaGemmBackend parse_cuda_gemm_backend(const std::string& name) {
  if (name == "auto") return CudaGemmBackend::automatic;
  if (name == "cublas") return CudaGemmBackend::cublas;
  if (name == "cublaslt") return CudaGemmBackend::cublaslt;
  TG_THROW(ValueError, "--gemm-backend: unknown value '", name, "' (expected auto, cublas, cublaslt)");
}

void set_cuda_gemm_autotune(bool on) { g_cuda_gemm_autotune.store(on); }

void set_cuda_gemm_sm_margin(int sms) {
  TG_CHECK(sms == kAutomaticSmMargin || (sms >= 0 && sms <= 64), ValueError,
           "GEMM SM margin: expected 0 to 64 or automatic, got ", sms);
  g_cuda_gemm_sm_margin.store(sms);
}

int cuda_gemm_sm_margin() { return g_cuda_gemm_sm_margin.load(); }

bool cuda_gemm_autotune() { return g_cuda_gemm_autotune.load(); }

void set_cuda_bias_gradient(CudaBiasGradient how) { g_cuda_bias_gradient.store(how); }

CudaBiasGradient cuda_bias_gradient() { return g_cuda_bias_gradient.load(); }

CudaBiasGradient parse_cuda_bias_gradient(const std::string& name) {
  if (name == "auto") return CudaBiasGradient::automatic;
  if (name == "epilogue") return CudaBiasGradient::epilogue;
  if (name == "column-sums") return CudaBiasGradient::column_sums;
  TG_THROW(ValueError, "--bias-gradient: unknown value '", name, "' (expected auto, epilogue, column-sums)");
}

MatmulShape check_matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  check_same_device_dtype("matmul", a, {&b});
  TG_CHECK(is_floating(a.dtype()), TypeError, "matmul: expected a floating dtype, got ", dtype_name(a.dtype()));
  TG_CHECK(a.dim() >= 2, ShapeError, "matmul: a must have at least 2 dims ([..., M, K]), got shape ", a.shape().str());
  TG_CHECK(b.dim() >= 2, ShapeError, "matmul: b must have at least 2 dims ([..., K, N]), got shape ", b.shape().str());
  const int64_t ka = trans_a ? a.size(-2) : a.size(-1);
  const int64_t kb = trans_b ? b.size(-1) : b.size(-2);
  TG_CHECK(ka == kb, ShapeError, "matmul: inner dimensions differ: a is ", a.shape().str(), " (",
           trans_a ? "transposed, " : "", "K = ", ka, "), b is ", b.shape().str(), " (", trans_b ? "transposed, " : "",
           "K = ", kb, ")");
  MatmulShape s{leading_dims(a), 1, trans_a ? a.size(-1) : a.size(-2), ka, trans_b ? b.size(-2) : b.size(-1)};
  const Shape b_batch = leading_dims(b);
  TG_CHECK(s.batch_dims == b_batch, ShapeError, "matmul: batch dims differ: a is ", a.shape().str(), " (batch ",
           s.batch_dims.str(), "), b is ", b.shape().str(), " (batch ", b_batch.str(),
           "); they must be identical (no broadcasting)");
  s.batch = s.batch_dims.numel();
  return s;
}

namespace {

// op(a)·op(b) (+ bias) into `out`, a contiguous tensor of the product's shape (checked by the
// callers) in the result dtype.
void gemm_to(const Tensor& out, const MatmulShape& s, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
             const Tensor& bias) {
  if (out.numel() == 0) return;
  const Tensor c = out.raw_view({s.batch, s.m, s.n});
  if (s.k == 0) {  // an empty sum
    if (bias.defined()) c.copy_(bias.raw_expand(c.shape()));
    else c.fill_(0);
    return;
  }
  const GemmOperand ga = gemm_operand(a, trans_a, s.batch), gb = gemm_operand(b, trans_b, s.batch);
  const GemmMath math = gemm_math(a.dtype());
  if (bias.defined())
    TG_DEVICE_DISPATCH(a.device(), gemm_bias, c, ga.matrix, ga.trans, gb.matrix, gb.trans, bias.raw_contiguous(),
                       math);
  else
    TG_DEVICE_DISPATCH(a.device(), gemm, c, ga.matrix, ga.trans, gb.matrix, gb.trans, /*accumulate=*/false, math);
}

bool policy_rounds(const Tensor& a) {
  const PrecisionPolicy& policy = precision_policy();
  return policy.gemm_dtype && *policy.gemm_dtype != a.dtype() && a.dtype() == DType::f32;
}

Shape product_shape(const MatmulShape& s) {
  Shape shape = s.batch_dims;
  shape.dims().insert(shape.dims().end(), {s.m, s.n});
  return shape;
}

}  // namespace

Tensor gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias,
            std::optional<DType> out_dtype) {
  const MatmulShape s = check_matmul(a, b, trans_a, trans_b);
  const DType out_type = gemm_out_dtype(a.dtype(), out_dtype, bias.defined());
  if (bias.defined()) {
    check_same_device_dtype("matmul", a, {&bias});
    TG_CHECK(bias.dim() == 1 && bias.size(0) == s.n, ShapeError, "matmul: bias must have shape [", s.n,
             "] (N), got ", bias.shape().str());
  }
  if (policy_rounds(a)) return gemm_in(*precision_policy().gemm_dtype, a, trans_a, b, trans_b, bias);
  Tensor out = empty(product_shape(s), out_type, a.device());
  gemm_to(out, s, a, trans_a, b, trans_b, bias);
  return out;
}

void gemm_into(const Tensor& out, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b) {
  const MatmulShape s = check_matmul(a, b, trans_a, trans_b);
  TG_INTERNAL_ASSERT(out.shape() == product_shape(s) && out.is_contiguous() && out.device() == a.device() &&
                         (out.dtype() == a.dtype() || (a.dtype() == DType::bf16 && out.dtype() == DType::f32)),
                     "gemm_into: out ", out.shape().str(), " for a product of shape ", product_shape(s).str());
  if (policy_rounds(a)) {
    out.copy_(gemm_in(*precision_policy().gemm_dtype, a, trans_a, b, trans_b, Tensor()));
    return;
  }
  gemm_to(out, s, a, trans_a, b, trans_b, Tensor());
}

ProductAndRowSums gemm_with_row_sums(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                                     std::optional<DType> out_dtype) {
  TG_CHECK(a.dim() == 2 && b.dim() == 2, ShapeError, "gemm_with_row_sums: expected 2-D operands, got shapes ",
           a.shape().str(), " and ", b.shape().str());
  const MatmulShape s = check_matmul(a, b, trans_a, trans_b);
  const DType out_type = gemm_out_dtype(a.dtype(), out_dtype, /*has_bias=*/false);
  if (a.device().is_cuda() && bias_gradient_in_epilogue() && !policy_rounds(a) && s.k > 0 && s.m > 0 &&
      s.n > 0) {
    const GemmOperand ga = gemm_operand(a, trans_a, 1), gb = gemm_operand(b, trans_b, 1);
    ProductAndRowSums result{empty({s.m, s.n}, out_type, a.device()), empty({s.m}, out_type, a.device())};
    if (TG_DEVICE_DISPATCH(a.device(), gemm_row_sums, result.product.raw_view({1, s.m, s.n}), ga.matrix, ga.trans,
                           gb.matrix, gb.trans, result.row_sums, gemm_math(a.dtype())))
      return result;
  }
  // op(a)'s rows are a's columns when transposed (summed over a's dim 0), else a's rows.
  const Tensor sums = trans_a ? sum_to(a, Shape({s.m}), out_type) : sum_to(a, Shape({s.m, 1}), out_type);
  return {gemm(a, trans_a, b, trans_b, Tensor(), out_type), sums.raw_reshape({s.m})};
}

}  // namespace tg
