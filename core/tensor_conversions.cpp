// to_dtype: many conversions in a few launches.
#include "core/tensor_conversions.h"

#include <map>
#include <utility>

#include "core/memory_kernels.h"

namespace tg {

std::vector<Tensor> to_dtype(const std::vector<Tensor>& tensors, DType dtype) {
  std::vector<Tensor> out(tensors.size());
  // Per CUDA device and source dtype: the contiguous sources and their new targets.
  std::map<std::pair<int, DType>, std::pair<std::vector<Tensor>, std::vector<Tensor>>> batches;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (!t.defined() || t.dtype() == dtype || !t.device().is_cuda() || !t.is_contiguous()) {
      out[i] = t.defined() ? t.to(dtype) : t;
      continue;
    }
    out[i] = empty(t.shape(), dtype, t.device());
    auto& [targets, sources] = batches[{t.device().index, t.dtype()}];
    targets.push_back(out[i]);
    sources.push_back(t);
  }
#if TG_WITH_CUDA
  for (const auto& [key, batch] : batches) kernels::convert_many_cuda(batch.first, batch.second);
#endif
  return out;
}

}  // namespace tg
