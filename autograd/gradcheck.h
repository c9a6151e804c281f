// gradcheck: compares backward() against central finite differences, in f64 on the CPU.
// The output is projected on a fixed random direction v; the analytic gradient of <out, v>
// (backward with grad = v) must match (<out(x + eps e_j), v> - <out(x - eps e_j), v>) / 2 eps for
// every element j of every input that requires grad.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace tg {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  uint64_t seed = 20231128;
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;
  std::string message;  // the first mismatch: input, element, analytic vs numeric
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

// `inputs` must be f64 CPU tensors; those with requires_grad are checked. They are perturbed
// in place and restored.
GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace tg
