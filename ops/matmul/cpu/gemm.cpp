// CPU kernels of the GEMM: Eigen GEMMs over strided maps of the operands (no copies
// for f32/f64); bf16 operands are widened to f32 matrices first, so bf16 products accumulate
// in f32 and are rounded once.
#include <Eigen/Core>

#include <type_traits>

#include "ops/matmul/gemm_kernels.h"

namespace tg::cpu {

namespace {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstStridedMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class T>
const T* matrix_data(const Tensor& x, int64_t index) {
  return static_cast<const T*>(x.raw_data()) + index * x.stride(0);
}

// Matrix `index` of an f32/f64 operand, mapped in place.
template <class T>
ConstStridedMap<T> map_matrix(const Tensor& x, int64_t index) {
  return ConstStridedMap<T>(matrix_data<T>(x, index), x.size(1), x.size(2), Eigen::OuterStride<>(x.stride(1)));
}

// A bf16 matrix (rows with stride `ld`) widened to f32.
RowMatrix<float> widen(const bf16* data, int64_t rows, int64_t cols, int64_t ld) {
  RowMatrix<float> out(rows, cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) out(i, j) = static_cast<float>(data[i * ld + j]);
  return out;
}

RowMatrix<float> widen_matrix(const Tensor& x, int64_t index) {
  return widen(matrix_data<bf16>(x, index), x.size(1), x.size(2), x.stride(1));
}

// c = op(a)·op(b), or c += op(a)·op(b).
template <class MC, class MA, class MB>
void multiply(MC& c, const MA& a, bool trans_a, const MB& b, bool trans_b, bool accumulate) {
  auto assign = [&](const auto& product) {
    if (accumulate) c.noalias() += product;
    else c.noalias() = product;
  };
  if (trans_a && trans_b) assign(a.transpose() * b.transpose());
  else if (trans_a) assign(a.transpose() * b);
  else if (trans_b) assign(a * b.transpose());
  else assign(a * b);
}

// T: the operands' type; Out: C's (T, or f32 for bf16 operands).
template <class T, class Out>
void gemm_typed(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, bool accumulate) {
  const int64_t batch = c.size(0), m = c.size(1), n = c.size(2);
  for (int64_t i = 0; i < batch; ++i) {
    Out* out = static_cast<Out*>(c.raw_data()) + i * m * n;
    if constexpr (std::is_same_v<T, bf16> && std::is_same_v<Out, bf16>) {
      RowMatrix<float> result = accumulate ? widen(out, m, n, n) : RowMatrix<float>(m, n);
      multiply(result, widen_matrix(a, i), trans_a, widen_matrix(b, i), trans_b, accumulate);
      for (int64_t k = 0; k < m * n; ++k) out[k] = bf16(result.data()[k]);
    } else if constexpr (std::is_same_v<T, bf16>) {  // f32 out: the accumulator itself
      Eigen::Map<RowMatrix<float>> result(out, m, n);
      multiply(result, widen_matrix(a, i), trans_a, widen_matrix(b, i), trans_b, accumulate);
    } else {
      Eigen::Map<RowMatrix<T>> result(out, m, n);
      multiply(result, map_matrix<T>(a, i), trans_a, map_matrix<T>(b, i), trans_b, accumulate);
    }
  }
}

}  // namespace

void gemm(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, bool accumulate, GemmMath) {
  if (a.dtype() == DType::bf16 && c.dtype() == DType::f32) {
    gemm_typed<bf16, float>(c, a, trans_a, b, trans_b, accumulate);
    return;
  }
  TG_INTERNAL_ASSERT(c.dtype() == a.dtype(), "gemm on the CPU: ", dtype_name(a.dtype()), " operands into ",
                     dtype_name(c.dtype()));
  TG_DISPATCH_FLOATING(c.dtype(), "matmul", [&] { gemm_typed<scalar_t, scalar_t>(c, a, trans_a, b, trans_b, accumulate); });
}

void gemm_bias(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& bias,
               GemmMath math) {
  c.copy_(bias.raw_expand(c.shape()));
  gemm(c, a, trans_a, b, trans_b, /*accumulate=*/true, math);
}

}  // namespace tg::cpu
