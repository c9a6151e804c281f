// The precision policy: in which dtype GEMMs compute, whether f32 GEMMs may use TF32 tensor
// cores, in which dtype matmul nodes keep their saved operands, and the mixed-precision
// (autocast) dtype in which nn layers run on f32 master weights. One object, current per
// thread and set for a scope by PrecisionGuard (like NoGradGuard for recording). Every GEMM
// reads it through ops/matmul/gemm.h; the matmul family's strategies read `saved_dtype` when a
// node saves in forward. The default is plain fp32: no TF32, operands kept as they are.
//
// A backward GEMM reads the policy current when backward runs, so a training step keeps one
// guard around its forward and backward (apps/train_vit does, for the whole run).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace tg {

struct PrecisionPolicy {
  // GEMMs on f32 operands compute in this dtype: nullopt computes in the operands' dtype; bf16
  // rounds both operands to bf16, multiplies with f32 accumulation and returns the product,
  // rounded to bf16, in the operands' dtype.
  std::optional<DType> gemm_dtype;
  // f32 GEMMs on CUDA may use TF32 tensor cores (10-bit mantissa inputs, f32 accumulation).
  // The CPU has no TF32: there it changes nothing.
  bool allow_tf32 = false;
  // What matmul nodes keep of an operand for backward (all of it or the sampled rows) is stored
  // in this dtype (bf16: half the bytes of f32, converted back for the backward GEMM); nullopt
  // keeps the operand's dtype.
  std::optional<DType> saved_dtype;
  // Mixed precision (PyTorch's autocast): nn layers cast their f32 parameters and inputs to this
  // dtype (bf16) for their matmuls and attention, so activations flow and are kept in bf16 with
  // f32 accumulation inside every GEMM; LayerNorm, the residual stream, the loss and reductions
  // stay f32, and parameters, gradients and optimizer state stay f32 (the casts' backward
  // returns f32 gradients). nullopt: no casts. bf16 shares f32's exponent range, so gradients
  // need no loss scaling.
  std::optional<DType> autocast_dtype;

  bool operator==(const PrecisionPolicy&) const = default;
  // "gemm f32, tf32 off, saved same" style summary, for configuration printouts.
  std::string str() const;
};

// The policy of this thread.
const PrecisionPolicy& precision_policy();

// Sets `policy` for the current thread until the guard dies, then restores the previous one.
class PrecisionGuard {
 public:
  explicit PrecisionGuard(const PrecisionPolicy& policy);
  ~PrecisionGuard();
  PrecisionGuard(const PrecisionGuard&) = delete;
  PrecisionGuard& operator=(const PrecisionGuard&) = delete;

 private:
  PrecisionPolicy previous_;
};

// The policy of a `--precision` mode: "fp32" (the default policy), "tf32" (allow_tf32) or
// "bf16" (autocast_dtype bf16: mixed precision). ValueError naming the modes otherwise, in the
// command lines' words: "--precision: unknown value 'fp16' (expected fp32, tf32, bf16)".
PrecisionPolicy precision_mode(const std::string& mode);

// `x` cast (recorded, tg::cast) to the policy's autocast dtype when one is set and `x` is f32;
// `x` itself otherwise (undefined stays undefined). Layers call it on their inputs and
// parameters before a matmul: the cast's backward hands f32 gradients to f32 parameters.
Tensor autocast(const Tensor& x);
// The dtype autocast(x) would have, without casting anything (x defined).
DType autocast_dtype_of(const Tensor& x);

// PyTorch autocast's weight cache, filled in one pass: while one is alive, the linear-family ops
// under mixed precision (ops/matmul/linear.h) take these parameters' copies in `dtype`, all
// converted at construction (to_dtype: a few multi-tensor launches), instead of converting their
// weight and bias once per op per forward. The parameters must not change while it lives: a
// training step holds one around its forward and backward, and updates after it is gone. The
// copies live as long as the cache or the nodes that keep them (each linear keeps its weight's
// copy for dX anyway). Caches nest; a thread searches its innermost one.
class AutocastWeightCache {
 public:
  AutocastWeightCache(const std::vector<Tensor>& parameters, DType dtype);
  ~AutocastWeightCache();
  AutocastWeightCache(const AutocastWeightCache&) = delete;
  AutocastWeightCache& operator=(const AutocastWeightCache&) = delete;

  // The copy of `x` in `dtype`, when x is a cached parameter or a contiguous view of all of one
  // (the patch embedding's reshaped kernel), viewed as x; undefined otherwise.
  static Tensor find(const Tensor& x, DType dtype);

 private:
  DType dtype_;
  std::vector<std::pair<Tensor, Tensor>> copies_;  // (parameter, its copy)
  AutocastWeightCache* previous_;
};

// The dtype named by a saved-dtype or GEMM-dtype option: "same" -> nullopt, "bf16" -> bf16.
// ValueError naming `what` (e.g. "--saved-dtype") and the accepted names otherwise.
std::optional<DType> parse_precision_dtype(const std::string& name, const std::string& what);
// The inverse: nullopt -> "same", bf16 -> "bf16".
std::string precision_dtype_name(const std::optional<DType>& dtype);

}  // namespace tg
