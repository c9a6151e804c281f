// CPU kernels of the sampling family that work on rows of an operand: row norms, the row
// gathers of the sampled matmul nodes, and the gradient-norm proxy's moving average.
#include <cmath>
#include <cstring>

#include "core/strided.h"
#include "ops/matmul/sampling_kernels.h"

namespace tg::cpu {

namespace {

// ||row|| of each of the `rows` contiguous rows of `length` elements of x, times
// scale[r % positions] when a scale is given.
void norms_of_rows(float* out, const Tensor& x, int64_t rows, int64_t length, const float* scale = nullptr,
                   int64_t positions = 1) {
  TG_DISPATCH_FLOATING(x.dtype(), "row_norms", [&] {
    using acc = acc_t<scalar_t>;
    const auto* data = static_cast<const scalar_t*>(x.raw_data());
    for (int64_t r = 0; r < rows; ++r) {
      acc squares = 0;
      for (int64_t i = 0; i < length; ++i) {
        const acc v = convert<acc>(data[r * length + i]);
        squares += v * v;
      }
      const auto norm = static_cast<float>(std::sqrt(squares));
      out[r] = scale ? norm * scale[r % positions] : norm;
    }
  });
}

// Row indices[b, j] of item b, checked against K.
int64_t checked_row(const int32_t* indices, int64_t b, int64_t j, int64_t k, int64_t K, const char* op) {
  const int32_t row = indices[b * k + j];
  TG_CHECK(row >= 0 && row < K, IndexError, op, ": index ", row, " at [", b, ", ", j, "] is out of range for ", K,
           " rows");
  return row;
}

}  // namespace

void row_norms(const Tensor& out, const Tensor& x, const Tensor& position_scale) {
  const bool scaled = position_scale.defined();
  norms_of_rows(out.data<float>(), x, x.size(0) * x.size(1), x.size(2), scaled ? position_scale.data<float>() : nullptr,
                scaled ? position_scale.numel() : 1);
}

void gather_rows(const Tensor& out, const Tensor& x, const Tensor& indices) {
  const int64_t batch = x.size(0), K = x.size(1), D = x.size(2), k = indices.size(1);
  const size_t row_bytes = static_cast<size_t>(D) * x.itemsize();
  const auto* src = static_cast<const char*>(x.raw_data());
  auto* dst = static_cast<char*>(out.raw_data());
  const int32_t* idx = indices.data<int32_t>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t row = checked_row(idx, b, j, k, K, "gather_rows");
      std::memcpy(dst + static_cast<size_t>(b * k + j) * row_bytes, src + static_cast<size_t>(b * K + row) * row_bytes,
                  row_bytes);
    }
}

void gather_scaled_rows(const Tensor& out, const Tensor& g, const Tensor& indices, const Tensor& weights) {
  const int64_t batch = g.size(0), K = g.size(1), E = g.size(2), k = indices.size(1);
  const int32_t* idx = indices.data<int32_t>();
  const float* w = weights.data<float>();
  TG_DISPATCH_FLOATING(g.dtype(), "gather_scaled_rows", [&] {
    using acc = acc_t<scalar_t>;
    const auto* src = static_cast<const scalar_t*>(g.raw_data());
    auto* dst = static_cast<scalar_t*>(out.raw_data());
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t row = checked_row(idx, b, j, k, K, "gather_scaled_rows");
        const acc weight = static_cast<acc>(w[b * k + j]);
        const scalar_t* from = src + (b * K + row) * E;
        scalar_t* to = dst + (b * k + j) * E;
        for (int64_t e = 0; e < E; ++e) to[e] = convert<scalar_t>(weight * convert<acc>(from[e]));
      }
  });
}

void update_row_norm_ema(const Tensor& ema, const Tensor& g, double beta) {
  const int64_t rows = g.size(0) * g.size(1), P = ema.size(0);
  std::vector<float> norms(static_cast<size_t>(rows));
  norms_of_rows(norms.data(), g, rows, g.size(2));
  float* e = ema.data<float>();
  for (int64_t t = 0; t < P && t < rows; ++t) {
    double sum = 0;
    int64_t count = 0;
    for (int64_t r = t; r < rows; r += P, ++count) sum += static_cast<double>(norms[static_cast<size_t>(r)]);
    e[t] = static_cast<float>(beta * static_cast<double>(e[t]) + (1.0 - beta) * (sum / static_cast<double>(count)));
  }
}

}  // namespace tg::cpu
