// Finite-difference gradient checking.
#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/engine.h"

namespace tg {

namespace {
double project(const Tensor& out, const std::vector<double>& direction) {
  const std::vector<double> values = out.to(Device::cpu()).to(DType::f64).to_vector<double>();
  double sum = 0;
  for (size_t i = 0; i < values.size(); ++i) sum += values[i] * direction[i];
  return sum;
}
}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options) {
  for (const Tensor& input : inputs) {
    TG_CHECK(input.dtype() == DType::f64 && input.device().is_cpu() && input.is_contiguous(), TypeError,
             "gradcheck: inputs must be contiguous f64 CPU tensors, got dtype ", dtype_name(input.dtype()),
             " on ", input.device().str());
  }
  for (const Tensor& input : inputs) input.set_grad(Tensor());
  const Tensor out = fn(inputs);
  TG_CHECK(out.dtype() == DType::f64, TypeError, "gradcheck: the function must return f64, got ",
           dtype_name(out.dtype()));
  Generator generator(options.seed);
  const Tensor direction = randn(out.shape(), DType::f64, Device::cpu(), generator);
  const std::vector<double> v = direction.to_vector<double>();
  backward(out, direction);

  GradcheckResult result;
  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& input = inputs[k];
    if (!input.requires_grad()) continue;
    const Tensor grad = input.grad();
    const std::vector<double> analytic =
        grad.defined() ? grad.to_vector<double>() : std::vector<double>(static_cast<size_t>(input.numel()), 0.0);
    double* x = input.data<double>();
    for (int64_t j = 0; j < input.numel(); ++j) {
      const double original = x[j];
      x[j] = original + options.eps;
      const double plus = project(fn(inputs), v);
      x[j] = original - options.eps;
      const double minus = project(fn(inputs), v);
      x[j] = original;
      const double numeric = (plus - minus) / (2 * options.eps);
      const double error = std::abs(analytic[static_cast<size_t>(j)] - numeric);
      result.max_abs_error = std::max(result.max_abs_error, error);
      if (result.ok && error > options.atol + options.rtol * std::abs(numeric)) {
        result.ok = false;
        std::ostringstream message;
        message.precision(10);
        message << "gradcheck: input " << k << " (shape " << input.shape().str() << "), element " << j
                << ": analytic " << analytic[static_cast<size_t>(j)] << " vs numeric " << numeric;
        result.message = message.str();
      }
    }
  }
  return result;
}

}  // namespace tg
