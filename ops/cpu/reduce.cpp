// CPU kernels of the reduction family.
#include <limits>

#include "core/strided.h"
#include "ops/reduce_kernels.h"

namespace tg::cpu {

void sum(const Tensor& out, const Tensor& in, ReduceShape s, double scale) {
  TG_DISPATCH_FLOATING(in.dtype(), "sum", [&] {
    const auto* x = static_cast<const scalar_t*>(in.raw_data());
    TG_INTERNAL_ASSERT(out.dtype() == in.dtype() || (in.dtype() == DType::bf16 && out.dtype() == DType::f32),
                       "sum on the CPU: ", dtype_name(in.dtype()), " into ", dtype_name(out.dtype()));
    std::vector<double> row(static_cast<size_t>(s.inner));
    for (int64_t o = 0; o < s.outer; ++o) {
      std::fill(row.begin(), row.end(), 0.0);
      const scalar_t* block = x + o * s.reduce * s.inner;
      for (int64_t r = 0; r < s.reduce; ++r)
        for (int64_t i = 0; i < s.inner; ++i) row[static_cast<size_t>(i)] += convert<double>(block[r * s.inner + i]);
      for (int64_t i = 0; i < s.inner; ++i) {
        const double value = row[static_cast<size_t>(i)] * scale;
        if (out.dtype() == in.dtype()) static_cast<scalar_t*>(out.raw_data())[o * s.inner + i] = convert<scalar_t>(value);
        else out.data<float>()[o * s.inner + i] = static_cast<float>(value);
      }
    }
  });
}

void max(const Tensor& values, const Tensor& indices, const Tensor& in, ReduceShape s) {
  TG_DISPATCH_ALL(in.dtype(), "max", [&] {
    const auto* x = static_cast<const scalar_t*>(in.raw_data());
    auto* v = static_cast<scalar_t*>(values.raw_data());
    auto* idx = indices.defined() ? indices.data<int64_t>() : nullptr;
    for (int64_t o = 0; o < s.outer; ++o) {
      for (int64_t i = 0; i < s.inner; ++i) {
        const scalar_t* column = x + o * s.reduce * s.inner + i;
        int64_t best = 0;
        for (int64_t r = 1; r < s.reduce; ++r)
          if (convert<double>(column[r * s.inner]) > convert<double>(column[best * s.inner])) best = r;
        v[o * s.inner + i] = column[best * s.inner];
        if (idx) idx[o * s.inner + i] = best;
      }
    }
  });
}

}  // namespace tg::cpu
