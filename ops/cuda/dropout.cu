// CUDA kernel of the dropout family: a thread per Philox block, i.e. per four consecutive
// elements, which is the layout of the CPU kernel and of uniform fills.
#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"
#include "core/philox.h"
#include "core/strided.h"
#include "ops/dropout_kernels.h"

namespace tg::cuda {

namespace {

template <class T>
__global__ void dropout_kernel(T* out, const T* in, int64_t n, double p, acc_t<T> scale, uint64_t seed,
                               uint64_t first_block) {
  using acc = acc_t<T>;
  TG_GRID_STRIDE_LOOP(b, (n + 3) / 4) {
    const philox::Block block = philox::generate(seed, first_block + static_cast<uint64_t>(b), 0);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = b * 4 + lane;
      if (i >= n) break;
      const bool keep = static_cast<double>(philox::to_uniform(block.w[lane])) >= p;
      out[i] = keep ? convert<T>(convert<acc>(in[i]) * scale) : T(0.0f);
    }
  }
}

}  // namespace

void dropout_mask_apply(const Tensor& out, const Tensor& in, double p, uint64_t seed, uint64_t first_block) {
  const int64_t n = in.numel();
  if (n == 0) return;
  DeviceGuard guard(in.device().index);
  TG_DISPATCH_FLOATING(in.dtype(), "dropout", [&] {
    using acc = acc_t<scalar_t>;
    dropout_kernel<<<grid_for((n + 3) / 4), kBlockSize, 0, current_stream()>>>(
        static_cast<scalar_t*>(out.raw_data()), static_cast<const scalar_t*>(in.raw_data()), n, p,
        static_cast<acc>(1.0 / (1.0 - p)), seed, first_block);
    TG_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace tg::cuda
