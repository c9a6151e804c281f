// Device dispatch for op families: TG_DEVICE_DISPATCH(device, fn, args...) calls cpu::fn(args...)
// (looked up from the calling namespace, e.g. tg::cpu or tg::nn::cpu)
// or cuda::fn(args...) (each family declares both in its *_kernels.h), and checks that all
// tensor arguments of an op share one device.
#pragma once

#include "core/tensor.h"

#if TG_WITH_CUDA
#define TG_DEVICE_DISPATCH(device, fn, ...) \
  ((device).is_cpu() ? cpu::fn(__VA_ARGS__) : cuda::fn(__VA_ARGS__))
#else
#define TG_DEVICE_DISPATCH(device, fn, ...) cpu::fn(__VA_ARGS__)
#endif

namespace tg {

// TypeError unless every defined tensor is on `first`'s device and has its dtype.
inline void check_same_device_dtype(const char* op, const Tensor& first, std::initializer_list<const Tensor*> others) {
  for (const Tensor* t : others) {
    if (!t->defined()) continue;
    TG_CHECK(t->device() == first.device(), TypeError, op, ": expected all tensors on ", first.device().str(),
             ", got one on ", t->device().str());
    TG_CHECK(t->dtype() == first.dtype(), TypeError, op, ": expected all tensors of dtype ",
             dtype_name(first.dtype()), ", got ", dtype_name(t->dtype()));
  }
}

}  // namespace tg
