// The precision policy: in which dtype GEMMs compute, whether f32 GEMMs may use TF32 tensor
// cores, and in which dtype matmul nodes keep their saved operands. One object, current per
// thread and set for a scope by PrecisionGuard (like NoGradGuard for recording). Every GEMM
// reads it through ops/matmul/gemm.h; the matmul family's strategies read `saved_dtype` when a
// node saves in forward. The default is plain fp32: no TF32, operands kept as they are.
//
// A backward GEMM reads the policy current when backward runs, so a training step keeps one
// guard around its forward and backward (apps/train_vit does, for the whole run).
#pragma once

#include <optional>
#include <string>

#include "core/dtype.h"

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

// The dtype named by a saved-dtype or GEMM-dtype option: "same" -> nullopt, "bf16" -> bf16.
// ValueError naming `what` (e.g. "--saved-dtype") and the accepted names otherwise.
std::optional<DType> parse_precision_dtype(const std::string& name, const std::string& what);
// The inverse: nullopt -> "same", bf16 -> "bf16".
std::string precision_dtype_name(const std::optional<DType>& dtype);

}  // namespace tg
