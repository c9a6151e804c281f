// AddsIntoPendingGrad's bookkeeping: the sums the engine offers a node for one apply().
#include "autograd/pending_grad.h"

#include <algorithm>
#include <utility>

namespace tg {

void AddsIntoPendingGrad::offer_pending_grad(size_t input, Tensor&& sum) {
  if (pending_.size() <= input) pending_.resize(input + 1);
  TG_INTERNAL_ASSERT(!pending_[input].defined(), "a pending gradient offered twice for input ", input);
  pending_[input] = std::move(sum);
}

bool AddsIntoPendingGrad::has_untaken_pending_grad() const {
  return std::any_of(pending_.begin(), pending_.end(), [](const Tensor& t) { return t.defined(); });
}

Tensor AddsIntoPendingGrad::take_pending_grad(size_t input) {
  if (input >= pending_.size()) return Tensor();
  return std::move(pending_[input]);
}

}  // namespace tg
