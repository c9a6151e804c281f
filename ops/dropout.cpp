// Dropout: forward dispatch and the backward node, which keeps only (p, seed, first_block);
// drop_path: dropout's mask on one value per sample, broadcast over the sample.
#include "ops/dropout.h"

#include "autograd/engine.h"
#include "core/memory_kernels.h"
#include "ops/dispatch.h"
#include "ops/dropout_kernels.h"
#include "ops/elementwise.h"

namespace tg {

namespace {

class DropoutBackward final : public Node {
 public:
  DropoutBackward(double p, uint64_t seed, uint64_t first_block)
      : Node("DropoutBackward"), p_(p), seed_(seed), first_block_(first_block) {}

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const Tensor g = grads[0].raw_contiguous();
    Tensor gx = empty(g.shape(), g.dtype(), g.device());
    TG_DEVICE_DISPATCH(g.device(), dropout_mask_apply, gx, g, p_, seed_, first_block_);
    return {gx};
  }

 private:
  double p_;
  uint64_t seed_, first_block_;
};

// dx = g * scale, the per-sample scale (0 or 1 / (1 - p)) broadcast over each sample.
class DropPathBackward final : public Node {
 public:
  explicit DropPathBackward(const Tensor& scale) : Node("DropPathBackward") { save(scale); }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override { return {mul(grads[0], saved(0))}; }
};

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& generator) {
  TG_CHECK(p >= 0 && p < 1, ValueError, "dropout: expected p in [0, 1), got ", p);
  TG_CHECK(is_floating(x.dtype()), TypeError, "dropout: expected a floating dtype, got ", dtype_name(x.dtype()));
  if (!training || p == 0) return x;
  const uint64_t seed = generator.seed();
  const uint64_t first_block = generator.reserve(kernels::random_blocks(kernels::Distribution::uniform, x.numel()));
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  TG_DEVICE_DISPATCH(x.device(), dropout_mask_apply, out, x.raw_contiguous(), p, seed, first_block);
  if (should_record({&x})) record(std::make_shared<DropoutBackward>(p, seed, first_block), {x}, {out});
  return out;
}

Tensor drop_path(const Tensor& x, double p, bool training, Generator& generator) {
  TG_CHECK(p >= 0 && p < 1, ValueError, "drop_path: expected p in [0, 1), got ", p);
  TG_CHECK(is_floating(x.dtype()), TypeError, "drop_path: expected a floating dtype, got ", dtype_name(x.dtype()));
  TG_CHECK(x.dim() >= 1, ShapeError, "drop_path: expected x [B, ...] with a sample dim, got a scalar");
  if (!training || p == 0) return x;
  std::vector<int64_t> per_sample(static_cast<size_t>(x.dim()), 1);
  per_sample[0] = x.size(0);
  // [B, 1, ..., 1]: 0 or 1 / (1 - p) per sample (ones need no grad: dropout records nothing).
  const Tensor scale = dropout(ones(Shape(per_sample), x.dtype(), x.device()), p, true, generator);
  Tensor out;
  {
    NoGradGuard no_grad;  // the node below keeps the scale only; mul's would keep x as well
    out = mul(x, scale);
  }
  if (should_record({&x})) record(std::make_shared<DropPathBackward>(scale), {x}, {out});
  return out;
}

}  // namespace tg
