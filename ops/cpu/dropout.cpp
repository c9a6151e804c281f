// CPU kernel of the dropout family: one Philox block per four consecutive elements.
#include "core/philox.h"
#include "core/strided.h"
#include "ops/dropout_kernels.h"

namespace tg::cpu {

void dropout_mask_apply(const Tensor& out, const Tensor& in, double p, uint64_t seed, uint64_t first_block) {
  const int64_t n = in.numel();
  TG_DISPATCH_FLOATING(in.dtype(), "dropout", [&] {
    using acc = acc_t<scalar_t>;
    const acc scale = static_cast<acc>(1.0 / (1.0 - p));
    const auto* x = static_cast<const scalar_t*>(in.raw_data());
    auto* y = static_cast<scalar_t*>(out.raw_data());
    for (int64_t b = 0; b * 4 < n; ++b) {
      const philox::Block block = philox::generate(seed, first_block + static_cast<uint64_t>(b), 0);
      for (int64_t lane = 0; lane < 4 && b * 4 + lane < n; ++lane) {
        const int64_t i = b * 4 + lane;
        const bool keep = static_cast<double>(philox::to_uniform(block.w[lane])) >= p;
        y[i] = keep ? convert<scalar_t>(convert<acc>(x[i]) * scale) : scalar_t(0.0f);
      }
    }
  });
}

}  // namespace tg::cpu
