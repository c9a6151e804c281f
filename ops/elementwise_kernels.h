// Kernel entry points of the elementwise family (ops/cpu/elementwise.cpp and
// ops/cuda/elementwise.cu). Outputs are contiguous tensors allocated by the caller; inputs may
// be strided views already expanded to the output's shape (broadcast dims have stride 0),
// except add_converted's, which are contiguous and of out's shape (b in its own dtype).
#pragma once

#include "core/tensor.h"
#include "ops/elementwise_functors.h"

namespace tg {
namespace cpu {
void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b);
void add_converted(const Tensor& out, const Tensor& a, const Tensor& b);
void unary(UnaryOp op, const Tensor& out, const Tensor& x, double p0, double p1);
void unary_backward(UnaryOp op, const Tensor& grad_x, const Tensor& grad_y, const Tensor& saved, double p0);
}  // namespace cpu
#if TG_WITH_CUDA
namespace cuda {
void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b);
void add_converted(const Tensor& out, const Tensor& a, const Tensor& b);
void unary(UnaryOp op, const Tensor& out, const Tensor& x, double p0, double p1);
void unary_backward(UnaryOp op, const Tensor& grad_x, const Tensor& grad_y, const Tensor& saved, double p0);
}  // namespace cuda
#endif
}  // namespace tg
