// ModelEma: pairs the tensors of the two modules by name once, then updates them in place with
// one fused pass per tensor (nn/optim_kernels.h ema_update).
#include "nn/ema.h"

#include "nn/optim_kernels.h"
#include "ops/dispatch.h"

namespace tg::nn {

ModelEma::ModelEma(Module& average, const Module& model, double decay) : decay_(decay) {
  TG_CHECK(decay >= 0 && decay < 1, ValueError, "ModelEma: expected a decay in [0, 1), got ", decay);
  const StateDict averaged = average.state_dict(), weights = model.state_dict();
  for (const auto& [name, w] : weights) {
    const auto it = averaged.find(name);
    TG_CHECK(it != averaged.end(), ValueError, "ModelEma: the average has no key '", name, "' (shape ",
             w.shape().str(), ") of the model");
    TG_CHECK(it->second.shape() == w.shape() && it->second.dtype() == w.dtype(), ShapeError, "ModelEma: key '", name,
             "' is ", dtype_name(it->second.dtype()), " ", it->second.shape().str(), " in the average but ",
             dtype_name(w.dtype()), " ", w.shape().str(), " in the model");
    TG_CHECK(it->second.device() == w.device() && it->second.is_contiguous() && w.is_contiguous(), ValueError,
             "ModelEma: key '", name, "' must be contiguous on one device, got ", it->second.device().str(), " and ",
             w.device().str());
    pairs_.emplace_back(it->second, w);
  }
  TG_CHECK(averaged.size() == weights.size(), ValueError, "ModelEma: the average has ", averaged.size(),
           " tensors, the model ", weights.size(), " (expected modules of one structure)");
}

void ModelEma::update() {
  for (const auto& [ema, w] : pairs_) TG_DEVICE_DISPATCH(ema.device(), ema_update, ema, w, decay_);
}

}  // namespace tg::nn
