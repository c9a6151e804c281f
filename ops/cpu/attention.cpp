// CPU kernels of fused attention: the reference the CUDA kernels are tested against. Each
// (batch, head) is computed row by row in double (f64: double), keeping only out and the row
// log-sum-exp; backward recomputes the probabilities from them, as the CUDA kernels do.
#include <cmath>
#include <vector>

#include "core/strided.h"
#include "ops/attention_kernels.h"

namespace tg::cpu {

namespace {

// Element (b, h, t, d) of a [B, H, T, D] tensor with a contiguous last dim.
template <class T>
struct Heads {
  T* data;
  int64_t sb, sh, st;
  explicit Heads(const Tensor& x)
      : data(static_cast<T*>(x.raw_data())), sb(x.stride(0)), sh(x.stride(1)), st(x.stride(2)) {}
  T* row(int64_t b, int64_t h, int64_t t) const { return data + b * sb + h * sh + t * st; }
};

}  // namespace

void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       double scale, bool /*allow_tf32: the CPU has no TF32*/) {
  const int64_t batch = q.size(0), heads = q.size(1), tq = q.size(2), tk = k.size(2), dim = q.size(3);
  TG_DISPATCH_FLOATING(q.dtype(), "scaled_dot_product_attention", [&] {
    using lse_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const Heads<const scalar_t> Q(q), K(k), V(v);
    const Heads<scalar_t> O(out);
    auto* L = static_cast<lse_t*>(lse.raw_data());
    std::vector<double> s(static_cast<size_t>(tk)), o(static_cast<size_t>(dim));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < tq; ++i) {
          const scalar_t* qi = Q.row(b, h, i);
          double max = -INFINITY;
          for (int64_t j = 0; j < tk; ++j) {
            const scalar_t* kj = K.row(b, h, j);
            double dot = 0;
            for (int64_t d = 0; d < dim; ++d) dot += convert<double>(qi[d]) * convert<double>(kj[d]);
            s[j] = dot * scale;
            max = std::max(max, s[j]);
          }
          double sum = 0;
          for (int64_t j = 0; j < tk; ++j) sum += std::exp(s[j] - max);
          const double log_sum = max + std::log(sum);
          std::fill(o.begin(), o.end(), 0.0);
          for (int64_t j = 0; j < tk; ++j) {
            const double p = std::exp(s[j] - log_sum);
            const scalar_t* vj = V.row(b, h, j);
            for (int64_t d = 0; d < dim; ++d) o[d] += p * convert<double>(vj[d]);
          }
          scalar_t* oi = O.row(b, h, i);
          for (int64_t d = 0; d < dim; ++d) oi[d] = convert<scalar_t>(o[d]);
          L[(b * heads + h) * tq + i] = static_cast<lse_t>(log_sum);
        }
  });
}

void attention_backward(const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v, const Tensor& grad_out,
                        const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        double scale, bool /*allow_tf32*/) {
  const int64_t batch = q.size(0), heads = q.size(1), tq = q.size(2), tk = k.size(2), dim = q.size(3);
  TG_DISPATCH_FLOATING(q.dtype(), "scaled_dot_product_attention backward", [&] {
    using lse_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const Heads<const scalar_t> Q(q), K(k), V(v), O(out), dO(grad_out);
    const Heads<scalar_t> dQ(grad_q), dK(grad_k), dV(grad_v);
    const auto* L = static_cast<const lse_t*>(lse.raw_data());
    std::vector<double> dk(static_cast<size_t>(tk * dim)), dv(static_cast<size_t>(tk * dim)), dq(static_cast<size_t>(dim));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < heads; ++h) {
        std::fill(dk.begin(), dk.end(), 0.0);
        std::fill(dv.begin(), dv.end(), 0.0);
        for (int64_t i = 0; i < tq; ++i) {
          const scalar_t *qi = Q.row(b, h, i), *gi = dO.row(b, h, i), *oi = O.row(b, h, i);
          double row_dot = 0;  // Σ_d dO·O = Σ_j P·dP, the softmax backward's row term
          for (int64_t d = 0; d < dim; ++d) row_dot += convert<double>(gi[d]) * convert<double>(oi[d]);
          const double log_sum = static_cast<double>(L[(b * heads + h) * tq + i]);
          std::fill(dq.begin(), dq.end(), 0.0);
          for (int64_t j = 0; j < tk; ++j) {
            const scalar_t *kj = K.row(b, h, j), *vj = V.row(b, h, j);
            double dot = 0, dp = 0;
            for (int64_t d = 0; d < dim; ++d) {
              dot += convert<double>(qi[d]) * convert<double>(kj[d]);
              dp += convert<double>(gi[d]) * convert<double>(vj[d]);
            }
            const double p = std::exp(dot * scale - log_sum);
            const double ds = p * (dp - row_dot) * scale;  // dS, with the scale of S = scale·q·k
            for (int64_t d = 0; d < dim; ++d) {
              dq[d] += ds * convert<double>(kj[d]);
              dk[j * dim + d] += ds * convert<double>(qi[d]);
              dv[j * dim + d] += p * convert<double>(gi[d]);
            }
          }
          scalar_t* dqi = dQ.row(b, h, i);
          for (int64_t d = 0; d < dim; ++d) dqi[d] = convert<scalar_t>(dq[d]);
        }
        for (int64_t j = 0; j < tk; ++j) {
          scalar_t *dkj = dK.row(b, h, j), *dvj = dV.row(b, h, j);
          for (int64_t d = 0; d < dim; ++d) {
            dkj[d] = convert<scalar_t>(dk[j * dim + d]);
            dvj[d] = convert<scalar_t>(dv[j * dim + d]);
          }
        }
      }
  });
}

}  // namespace tg::cpu
