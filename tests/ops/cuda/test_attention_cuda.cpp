// Fused attention on CUDA against the CPU reference: forward and the three input gradients for
// token counts that are and are not multiples of the 64-row tile (1, 64, 65, 130, 197, 200),
// head dims 32 and 64, Tq != Tk, strided heads; f32 through gemm_attention (the default) and
// tapegrad's tiled kernels; f32 within 1e-5 (CUDA cores, no TF32), TF32
// (tensor cores, when the policy allows it) within 5e-3, and bf16 within bf16 rounding, with
// tapegrad's kernels and with cuDNN's (CudaAttentionBackend);
// bit-identical reruns; and the errors.
#include <doctest/doctest.h>

#include <array>

#include "ops/attention.h"
#include "ops/precision.h"
#include "ops/shape_ops.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::check_cuda_matches_cpu;
using test::random_tensor;

namespace {

Tensor attention(const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], 0.125); }

// Sets the process-wide bf16 attention backend for a scope.
class BackendScope {
 public:
  explicit BackendScope(CudaAttentionBackend backend) { set_cuda_attention_backend(backend); }
  ~BackendScope() { set_cuda_attention_backend(CudaAttentionBackend::automatic); }
};

// The bf16 backends this build can run (cuDNN when built in; forced, so a refusal fails).
std::vector<CudaAttentionBackend> bf16_backends() {
  if (TG_WITH_CUDNN) return {CudaAttentionBackend::tapegrad, CudaAttentionBackend::cudnn};
  return {CudaAttentionBackend::tapegrad};
}

std::vector<Tensor> inputs(int64_t b, int64_t h, int64_t tq, int64_t tk, int64_t d, uint64_t seed) {
  std::vector<Tensor> in{random_tensor({b, h, tq, d}, seed), random_tensor({b, h, tk, d}, seed + 1),
                         random_tensor({b, h, tk, d}, seed + 2)};
  for (Tensor& t : in) t.set_requires_grad(true);
  return in;
}

}  // namespace

// The f32 paths: gemm_attention (automatic) and tapegrad's tiled kernels.
const CudaAttentionBackend kF32Backends[] = {CudaAttentionBackend::automatic, CudaAttentionBackend::tapegrad};

TEST_CASE("fused attention on CUDA: f32 matches the CPU within 1e-5, with the GEMMs and with tapegrad's kernels") {
  for (CudaAttentionBackend backend : kF32Backends) {
  BackendScope scope(backend);
  CAPTURE(static_cast<int>(backend));
  uint64_t seed = 900;
  for (const auto& [b, h, tq, tk, d] : std::vector<std::array<int64_t, 5>>{
           {2, 3, 1, 1, 64}, {2, 2, 64, 64, 64}, {3, 2, 65, 65, 64}, {1, 2, 197, 197, 64}, {2, 3, 130, 70, 32},
           {1, 1, 5, 200, 32}}) {
    CAPTURE(tq);
    CAPTURE(tk);
    CAPTURE(d);
    check_cuda_matches_cpu(attention, inputs(b, h, tq, tk, d, seed += 3), 1e-5);
  }
  }
}

TEST_CASE("fused attention on CUDA: TF32 tensor cores within TF32 rounding of the CPU, only when the policy allows") {
  for (CudaAttentionBackend backend : kF32Backends) {
  BackendScope scope(backend);
  CAPTURE(static_cast<int>(backend));
  PrecisionPolicy tf32;
  tf32.allow_tf32 = true;
  uint64_t seed = 930;
  for (const auto& [b, h, tq, tk, d] : std::vector<std::array<int64_t, 5>>{
           {2, 2, 64, 64, 64}, {3, 2, 65, 65, 64}, {2, 3, 197, 197, 64}, {2, 3, 130, 70, 32}, {1, 1, 5, 200, 32}}) {
    CAPTURE(tq);
    CAPTURE(tk);
    CAPTURE(d);
    const std::vector<Tensor> in = inputs(b, h, tq, tk, d, seed += 3);
    {
      PrecisionGuard guard(tf32);  // forward and backward both run under it (check_cuda_matches_cpu)
      check_cuda_matches_cpu(attention, in, 5e-3);
    }
    // TF32 really rounds (10-bit mantissas): the output differs from the fp32 kernels' by more
    // than f32 rounding, and the policy off gives the fp32 result back.
    std::vector<Tensor> gpu;
    for (const Tensor& t : in) gpu.push_back(t.detach().to(Device::cuda(0)));
    Tensor rounded;
    {
      PrecisionGuard guard(tf32);
      rounded = attention(gpu);
    }
    const auto exact = test::host_values(attention(gpu)), cpu = test::host_values(attention({in[0].detach(), in[1].detach(), in[2].detach()}));
    CHECK(test::relative_error(exact, cpu) < 1e-5);
    // tapegrad's kernels always round; cuBLAS is allowed, not obliged, to use TF32 (it picks
    // fp32 kernels for some small products): a warning only there.
    if (backend == CudaAttentionBackend::tapegrad) CHECK(test::relative_error(test::host_values(rounded), cpu) > 1e-5);
    else WARN(test::relative_error(test::host_values(rounded), cpu) > 1e-5);
  }
  }
}

TEST_CASE("fused attention on CUDA: bf16 is within bf16 rounding of the f32 result, with either backend") {
  for (CudaAttentionBackend backend : bf16_backends()) {
  BackendScope scope(backend);
  CAPTURE(static_cast<int>(backend));
  uint64_t seed = 950;
  for (const auto& [tq, tk, d] : std::vector<std::array<int64_t, 3>>{
           {1, 1, 64}, {64, 64, 64}, {65, 65, 64}, {130, 70, 64}, {197, 197, 64}, {5, 200, 64}, {64, 64, 32}, {7, 7, 32}}) {
    CAPTURE(tq);
    CAPTURE(tk);
    CAPTURE(d);
    const std::vector<Tensor> in = inputs(2, 3, tq, tk, d, seed += 3);
    auto run = [&](DType dtype, Device device) {
      std::vector<Tensor> copies;
      for (const Tensor& t : in) {
        Tensor c = t.detach().to(dtype).to(device).clone();
        c.set_requires_grad(true);
        copies.push_back(c);
      }
      const Tensor out = attention(copies);
      backward(out, random_tensor(out.shape(), 5, -1, 1, DType::f32).to(dtype).to(device));
      return std::vector<std::vector<double>>{test::host_values(out), test::host_values(copies[0].grad()),
                                              test::host_values(copies[1].grad()), test::host_values(copies[2].grad())};
    };
    const auto reference = run(DType::f32, Device::cpu());
    const auto bf16 = run(DType::bf16, Device::cuda(0));
    for (size_t i = 0; i < reference.size(); ++i) {
      CAPTURE(i);
      CHECK(test::relative_error(bf16[i], reference[i]) < 3e-2);
    }
  }
  }
}

TEST_CASE("fused attention on CUDA: strided heads, and bit-identical reruns") {
  Tensor qkv = random_tensor({2, 197, 3, 4, 64}, 990);
  qkv.set_requires_grad(true);
  check_cuda_matches_cpu(
      [](const std::vector<Tensor>& in) {
        const Tensor& x = in[0];
        auto head = [&](int64_t i) { return permute(select(x, 2, i), {0, 2, 1, 3}); };
        return scaled_dot_product_attention(head(0), head(1), head(2), 0.125);
      },
      {qkv}, 1e-5);
  std::vector<std::pair<DType, CudaAttentionBackend>> runs{{DType::f32, CudaAttentionBackend::automatic},
                                                           {DType::f32, CudaAttentionBackend::tapegrad}};
  for (CudaAttentionBackend backend : bf16_backends()) runs.emplace_back(DType::bf16, backend);
  for (const auto& [dtype, backend] : runs) {
    BackendScope scope(backend);
    CAPTURE(static_cast<int>(backend));
    const std::vector<Tensor> in = inputs(2, 3, 197, 197, 64, 991);
    auto grads = [&] {
      std::vector<Tensor> copies;
      for (const Tensor& t : in) {
        Tensor c = t.detach().to(dtype).to(Device::cuda(0)).clone();
        c.set_requires_grad(true);
        copies.push_back(c);
      }
      const Tensor out = attention(copies);
      backward(out, random_tensor(out.shape(), 6, -1, 1, DType::f32).to(dtype).to(Device::cuda(0)));
      return std::vector<std::vector<double>>{test::host_values(out), test::host_values(copies[0].grad()),
                                              test::host_values(copies[1].grad()), test::host_values(copies[2].grad())};
    };
    CHECK(grads() == grads());
  }
}

TEST_CASE("fused attention on CUDA: cuDNN on the ViT's layout (heads of one qkv buffer) matches tapegrad's kernels") {
  if (!TG_WITH_CUDNN) {
    BackendScope scope(CudaAttentionBackend::cudnn);
    const Tensor x = zeros({1, 2, 3, 64}, DType::bf16, Device::cuda(0));
    CHECK_THROWS_WITH_AS(scaled_dot_product_attention(x, x, x, 1),
                         "cuDNN fused attention: this build has no cuDNN (configure with -DTAPEGRAD_CUDNN=ON)",
                         BackendError);
    return;
  }
  const Tensor qkv_host = random_tensor({4, 197, 3, 6, 64}, 995);
  auto run = [&](CudaAttentionBackend backend) {
    BackendScope scope(backend);
    Tensor qkv = qkv_host.to(DType::bf16).to(Device::cuda(0)).clone();
    qkv.set_requires_grad(true);
    auto head = [&](int64_t i) { return permute(select(qkv, 2, i), {0, 2, 1, 3}); };
    const Tensor out = scaled_dot_product_attention(head(0), head(1), head(2), 0.125);
    backward(out, random_tensor(out.shape(), 7, -1, 1, DType::f32).to(DType::bf16).to(Device::cuda(0)));
    return std::vector<std::vector<double>>{test::host_values(out), test::host_values(qkv.grad())};
  };
  const auto ours = run(CudaAttentionBackend::tapegrad), cudnn = run(CudaAttentionBackend::cudnn);
  CHECK(test::relative_error(cudnn[0], ours[0]) < 1e-2);
  CHECK(test::relative_error(cudnn[1], ours[1]) < 2e-2);
  CHECK(run(CudaAttentionBackend::cudnn) == cudnn);  // bit-identical rerun
}

TEST_CASE("fused attention on CUDA: tapegrad's kernels say what they do not support; the GEMMs take it") {
  const Tensor x = random_tensor({1, 2, 3, 48}, 996).to(Device::cuda(0));
  const Tensor y = random_tensor({1, 2, 3, 64}, 997, -2, 2, DType::f64).to(Device::cuda(0));
  {
    BackendScope scope(CudaAttentionBackend::tapegrad);
    CHECK_THROWS_WITH_AS(scaled_dot_product_attention(x, x, x, 1),
                         "scaled_dot_product_attention on CUDA: head dims 32 and 64 are supported, got 48 (use the "
                         "explicit attention)",
                         NotImplementedError);
    CHECK_THROWS_WITH_AS(scaled_dot_product_attention(y, y, y, 1),
                         "scaled_dot_product_attention on CUDA: expected f32 or bf16, got f64", TypeError);
  }
  // gemm_attention, the f32/f64 default, has no head-dim or dtype limits.
  for (const Tensor& t : {x, y}) {
    CAPTURE(dtype_name(t.dtype()));
    const Tensor host = t.to(Device::cpu());
    CHECK(test::relative_error(test::host_values(scaled_dot_product_attention(t, t, t, 0.3)),
                               test::host_values(scaled_dot_product_attention(host, host, host, 0.3))) < 1e-5);
  }
}
