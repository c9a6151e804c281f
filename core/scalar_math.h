// Scalar transcendental functions for the element functors that CPU and CUDA kernels share
// (ops/elementwise_functors.h, ops/softmax_functors.h, nn/optim_update.h). Always called
// qualified, as tg::scalar::exp(x): an unqualified exp inside namespace tg would find
// tg::exp(const Tensor&) whenever ops/elementwise.h comes first, and which overload it found
// otherwise depended on the include order.
//
// On the host a float argument is evaluated with the double-precision C function and the
// result stays double, so the rest of the functor's expression (1 + erf(...), sum * exp(...))
// runs in double and is rounded once when the functor returns: what the CPU kernels have always
// computed (an unqualified exp(float) found the C library's double exp), and the more accurate
// choice. On the device the float functions run (expf, ...), as they always have there.
#pragma once

#include <cmath>

#include "core/dtype.h"

namespace tg::scalar {

#if defined(__CUDA_ARCH__)
#define TG_SCALAR_FUNCTION(name)                             \
  __device__ inline float name(float x) { return ::name##f(x); } \
  __device__ inline double name(double x) { return ::name(x); }
#else
#define TG_SCALAR_FUNCTION(name) \
  inline double name(double x) { return std::name(x); }
#endif

TG_SCALAR_FUNCTION(exp)
TG_SCALAR_FUNCTION(log)
TG_SCALAR_FUNCTION(sqrt)
TG_SCALAR_FUNCTION(tanh)
TG_SCALAR_FUNCTION(erf)

#undef TG_SCALAR_FUNCTION

}  // namespace tg::scalar
