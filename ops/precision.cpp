// The thread's precision policy and its scoped guard, and the autocast weight cache.
#include "ops/precision.h"

#include "core/error.h"
#include "core/tensor_conversions.h"
#include "ops/shape_ops.h"

namespace tg {

namespace {
thread_local PrecisionPolicy current_policy;
thread_local AutocastWeightCache* current_cache = nullptr;
}  // namespace

const PrecisionPolicy& precision_policy() { return current_policy; }

PrecisionGuard::PrecisionGuard(const PrecisionPolicy& policy) : previous_(current_policy) { current_policy = policy; }

PrecisionGuard::~PrecisionGuard() { current_policy = previous_; }

std::string PrecisionPolicy::str() const {
  return "gemm " + (gemm_dtype ? dtype_name(*gemm_dtype) : std::string("same")) + ", tf32 " +
         (allow_tf32 ? "on" : "off") + ", saved " + precision_dtype_name(saved_dtype) +
         (autocast_dtype ? std::string(", autocast ") + dtype_name(*autocast_dtype) : std::string());
}

PrecisionPolicy precision_mode(const std::string& mode) {
  PrecisionPolicy policy;
  if (mode == "fp32") return policy;
  if (mode == "tf32") {
    policy.allow_tf32 = true;
    return policy;
  }
  if (mode == "bf16") {
    policy.autocast_dtype = DType::bf16;
    return policy;
  }
  TG_THROW(ValueError, "--precision: unknown value '", mode, "' (expected fp32, tf32, bf16)");
}

Tensor autocast(const Tensor& x) {
  if (!x.defined()) return x;
  const DType dtype = autocast_dtype_of(x);
  return dtype == x.dtype() ? x : cast(x, dtype);
}

DType autocast_dtype_of(const Tensor& x) {
  const std::optional<DType>& dtype = current_policy.autocast_dtype;
  return dtype && x.dtype() == DType::f32 ? *dtype : x.dtype();
}

AutocastWeightCache::AutocastWeightCache(const std::vector<Tensor>& parameters, DType dtype)
    : dtype_(dtype), previous_(current_cache) {
  const std::vector<Tensor> copies = to_dtype(parameters, dtype);
  for (size_t i = 0; i < parameters.size(); ++i) copies_.emplace_back(parameters[i], copies[i]);
  current_cache = this;
}

AutocastWeightCache::~AutocastWeightCache() { current_cache = previous_; }

Tensor AutocastWeightCache::find(const Tensor& x, DType dtype) {
  const AutocastWeightCache* cache = current_cache;
  if (!cache || cache->dtype_ != dtype || !x.defined()) return Tensor();
  for (const auto& [parameter, copy] : cache->copies_) {
    if (x.raw_data() != parameter.raw_data() || !x.shares_storage(parameter) || x.numel() != parameter.numel())
      continue;
    if (x.shape() == parameter.shape() && x.strides() == parameter.strides()) return copy;
    if (x.is_contiguous() && parameter.is_contiguous()) return copy.raw_view(x.shape());
  }
  return Tensor();
}

std::optional<DType> parse_precision_dtype(const std::string& name, const std::string& what) {
  if (name == "same") return std::nullopt;
  if (name == "bf16") return DType::bf16;
  TG_THROW(ValueError, what, " must be same or bf16, got '", name, "'");
}

std::string precision_dtype_name(const std::optional<DType>& dtype) { return dtype ? dtype_name(*dtype) : "same"; }

}  // namespace tg
