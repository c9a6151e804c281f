// Activation checkpointing: a function's intermediates traded for a second run of it. checkpoint
// runs fn without recording (nothing of it is kept for backward but its inputs) and records one
// node whose backward reruns fn with recording on — with the random generators rewound to where
// the first run found them, so dropout draws repeat exactly — and backpropagates through the
// rerun. The gradients equal those of fn itself, bit for bit where the kernels are deterministic.
#pragma once

#include <functional>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace tg {

// fn(inputs) -> one new tensor. `generators`: the ones fn draws from (rewound for the rerun and
// left where they were afterwards). Without grad mode fn(inputs) is returned as it is; with it the
// output requires grad, whether or not an input does — fn is taken to depend on something that
// requires grad (a layer on its parameters), whose gradients the rerun's backward accumulates. fn must not depend on state that changes
// between forward and backward other than those generators: a caller whose fn reads a
// thread-local setting (e.g. the precision policy) captures it in fn.
Tensor checkpoint(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
                  const std::vector<Generator*>& generators = {});

}  // namespace tg
