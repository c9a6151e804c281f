// Shape, dtype and indexing ops with autograd: the differentiable counterparts of Tensor's own
// raw_ views and copies (which never record), the dtype cast, concat and index_select. Views share storage with their input like the
// Tensor methods they wrap; their backward maps the gradient through the inverse view and
// saves no tensors.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tg {

// Views where the strides allow it (reshape copies otherwise); backward reshapes back.
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor view(const Tensor& x, const Shape& shape);  // ShapeError when not viewable
// Merges dims [start_dim, end_dim] into one (a 0-d tensor becomes [1]).
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);  // the dim must have size 1
// Broadcasts size-1 dims (stride 0); backward sums the gradient back with sum_to.
Tensor expand(const Tensor& x, const Shape& shape);
// `x` itself when already contiguous (nothing recorded), else a recorded copy.
Tensor contiguous(const Tensor& x);
// `x` in `dtype` (floating dtypes): `x` itself when it has that dtype already (nothing
// recorded), else a converted copy whose backward converts the gradient back to x's dtype (the
// seam of mixed precision: an f32 parameter cast to bf16 gets an f32 gradient). Saves nothing.
Tensor cast(const Tensor& x, DType dtype);

// Parts of a tensor along one dim (views). Backward writes the gradient into zeros of the
// input's shape. slice clamps like Python; narrow and select raise IndexError out of range.
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& x, int64_t dim, int64_t index);  // removes dim
// Every select along `dim` at once (PyTorch's unbind). One backward node writes each part's
// gradient into one buffer (zeros for parts that got none): a pass over the input's size,
// where selecting the parts one by one would fill and add an input-sized buffer per part.
std::vector<Tensor> unbind(const Tensor& x, int64_t dim);

// Joins tensors of one dtype and device whose shapes agree except in `dim`.
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);

// out = x with `dim` replaced by the rows indices[k] (1-D, i64 or i32; duplicates and any
// order allowed). Any dtype forward; the backward (floating dtypes) sums the gradient of
// duplicated indices in a fixed order, so it is reproducible bit for bit.
// Indices outside [0, size of dim): IndexError on the CPU (naming the index, its position and
// the size). On CUDA they cannot be checked without synchronizing with the device, so they are
// clamped away instead: their output rows are zeros and their gradient rows are dropped.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& indices);

}  // namespace tg
