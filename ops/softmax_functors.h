// Online softmax statistics shared by the CPU and CUDA kernels of softmax and cross_entropy
// (host/device): the running maximum of a row and the sum of exp(x - max), updated one value at
// a time and merged across threads, so a row's log-sum-exp takes a single read.
#pragma once

#include <cmath>

#include "core/dtype.h"
#include "core/scalar_math.h"

namespace tg {

template <class A>
struct MaxSum {
  A max;
  A sum;  // sum of exp(x - max)

  TG_HOST_DEVICE static MaxSum empty() { return {-static_cast<A>(INFINITY), A(0)}; }

  TG_HOST_DEVICE void add(A x) {
    if (x == -static_cast<A>(INFINITY)) return;  // contributes exp(-inf) = 0; avoids -inf - -inf
    if (x > max) {
      sum = sum * scalar::exp(max - x) + A(1);
      max = x;
    } else {
      sum += scalar::exp(x - max);  // NaN inputs land here and poison the sum, as they should
    }
  }

  TG_HOST_DEVICE A log_sum_exp() const { return max + scalar::log(sum); }
};

// Symmetric in its arguments (bit for bit), so butterfly reductions agree on every lane.
template <class A>
TG_HOST_DEVICE inline MaxSum<A> combine(MaxSum<A> a, MaxSum<A> b) {
  if (a.max == -static_cast<A>(INFINITY)) return b;
  if (b.max == -static_cast<A>(INFINITY)) return a;
  const A m = a.max > b.max ? a.max : b.max;
  return {m, static_cast<A>(a.sum * scalar::exp(a.max - m) + b.sum * scalar::exp(b.max - m))};
}

}  // namespace tg
