// Reductions with autograd: sum and mean over any set of dims (keepdim optional); max/argmax
// over one dim (no gradient); sum_to, the reduction that undoes broadcasting.
#pragma once

#include <optional>
#include <vector>

#include "core/tensor.h"

namespace tg {

// Empty `dims` reduces over every dim.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);

struct MaxResult {
  Tensor values;
  Tensor indices;  // i64; the first index of the maximum
};
MaxResult max(const Tensor& x, int64_t dim, bool keepdim = false);  // not differentiable
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);

// Sums `x` down to `shape`, which `x` broadcasts from (leading dims dropped, size-1 dims kept),
// in `out_dtype`: x's dtype (nullopt), or f32 for a bf16 x (the f32 sum unrounded: the bias
// gradient of an f32 parameter under mixed precision). For backward functions: it records no
// node.
Tensor sum_to(const Tensor& x, const Shape& shape, std::optional<DType> out_dtype = std::nullopt);

}  // namespace tg
