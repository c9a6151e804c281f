// Tensor factories: empty/zeros/ones/full, arange, Philox rand/randn, from host data.
#include <cmath>
#include <cstring>

#include "core/memory_kernels.h"
#include "core/tensor.h"

namespace tg {

Tensor empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    TG_CHECK(d >= 0, ShapeError, "empty: negative size in shape ", shape.str());
  check_device_usable(device);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape.numel()) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  impl->device = device;
  return Tensor(std::move(impl));
}

Tensor empty_like(const Tensor& like) { return empty(like.shape(), like.dtype(), like.device()); }

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor out = empty(shape, dtype, device);
  out.fill_(value);
  return out;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1, dtype, device); }
Tensor zeros_like(const Tensor& like) { return zeros(like.shape(), like.dtype(), like.device()); }

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  TG_CHECK(step != 0, ValueError, "arange: step must be non-zero");
  TG_CHECK((end - start) / step >= 0, ValueError, "arange: range [", start, ", ", end,
           ") is empty or runs against step ", step);
  const auto n = static_cast<int64_t>(std::ceil((end - start) / step));
  Tensor host = empty({n}, DType::f64);
  double* values = host.data<double>();
  for (int64_t i = 0; i < n; ++i) values[i] = start + step * static_cast<double>(i);
  return host.to(dtype).to(device);
}

namespace {
Tensor random_fill(const Shape& shape, DType dtype, Device device, Generator& generator,
                   kernels::Distribution distribution, double a, double b) {
  TG_CHECK(is_floating(dtype), TypeError, "rand/randn: expected a floating dtype, got ", dtype_name(dtype));
  Tensor out = empty(shape, dtype, device);
  const uint64_t first = generator.reserve(kernels::random_blocks(distribution, out.numel()));
  if (device.is_cpu()) {
    kernels::random_cpu(out, distribution, generator.seed(), first, a, b);
  } else {
#if TG_WITH_CUDA
    kernels::random_cuda(out, distribution, generator.seed(), first, a, b);
#endif
  }
  return out;
}
}  // namespace

Tensor rand(const Shape& shape, DType dtype, Device device, Generator& generator, double low, double high) {
  return random_fill(shape, dtype, device, generator, kernels::Distribution::uniform, low, high);
}

Tensor randn(const Shape& shape, DType dtype, Device device, Generator& generator, double mean, double std) {
  return random_fill(shape, dtype, device, generator, kernels::Distribution::normal, mean, std);
}

Tensor from_host(const void* data, const Shape& shape, DType dtype, Device device) {
  Tensor host = empty(shape, dtype, Device::cpu());
  if (host.nbytes() > 0) std::memcpy(host.raw_data(), data, host.nbytes());
  return host.to(device);
}

}  // namespace tg
