// The WTA-CRS row sampler and its row helpers on CUDA against the CPU: identical indices and
// weights on every path of the CUDA sampler (item sizes from 65 to 12,608 rows) in every
// variant, repeatable runs, and the helpers within 1e-5.
#include <doctest/doctest.h>

#include <cmath>

#include "ops/matmul/sampling.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;
using test::PoisonGuard;
using test::random_tensor;
using test::relative_error;

namespace {

const Device kCuda = Device::cuda(0);

// Scores with the features that stress the sampler: a log-normal spread (winners), repeated
// values (ties broken by index) and zero rows.
Tensor stress_scores(int64_t batch, int64_t K, uint64_t seed) {
  Generator generator(seed);
  std::vector<float> values;
  for (double v : host_values(randn({batch, K}, DType::f64, Device::cpu(), generator))) {
    float s = static_cast<float>(std::exp(1.5 * v));
    if (v < -1.5) s = 0;                             // about 7% zero rows
    else if (v > 1.0) s = std::round(s);             // ties among the large ones
    values.push_back(s);
  }
  return from_vector(values, {batch, K});
}

void check_same_sample(const Tensor& scores, const SamplingConfig& config, uint64_t seed, uint64_t subsequence) {
  const RowSample cpu = sample_rows(scores, config, seed, subsequence);
  RowSample cuda;
  {
    PoisonGuard poison(kCuda);
    cuda = sample_rows(scores.to(kCuda), config, seed, subsequence);
  }
  CHECK(cuda.indices.device() == kCuda);
  const auto cpu_indices = cpu.indices.to_vector<int32_t>(), cuda_indices = cuda.indices.to_vector<int32_t>();
  const auto cpu_weights = cpu.weights.to_vector<float>(), cuda_weights = cuda.weights.to_vector<float>();
  int64_t index_mismatches = 0, weight_mismatches = 0;
  for (size_t i = 0; i < cpu_indices.size(); ++i) {
    index_mismatches += cpu_indices[i] != cuda_indices[i];
    weight_mismatches += cpu_weights[i] != cuda_weights[i];
  }
  CHECK(index_mismatches == 0);
  CHECK(weight_mismatches == 0);
  // A second run on the device gives the same bits.
  const RowSample again = sample_rows(scores.to(kCuda), config, seed, subsequence);
  CHECK(again.indices.to_vector<int32_t>() == cuda_indices);
  CHECK(again.weights.to_vector<float>() == cuda_weights);
}

}  // namespace

TEST_CASE("sample_rows: CUDA indices and weights equal the CPU's") {
  struct Case {
    int64_t batch, K, k;
  };
  // Every path of the CUDA sampler: one launch with the item sorted in shared memory by 256
  // threads (up to 1,024 rows: attention per batch·head) or by 1,024 (up to 5,120, 9,216 and
  // 13,312 rows: the linears of ViT-S/4 at batch 64 and 128, of ViT-B/16 at 64 images x 197
  // tokens, one item or several), a device sort then a selection staged in shared memory, and
  // one from global memory (items too long for shared memory); odd sizes.
  for (const Case c : {Case{1, 12608, 3782}, Case{768, 197, 59}, Case{768, 65, 19}, Case{384, 65, 32},
                       Case{3, 1000, 1}, Case{5, 300, 299}, Case{1, 4160, 2080}, Case{2, 4352, 1305},
                       Case{1, 6000, 1800}, Case{3, 5000, 2500}, Case{1, 8320, 2496}, Case{2, 12608, 3782},
                       Case{1, 5121, 1536}, Case{1, 9217, 2765}, Case{1, 13313, 3993}, Case{2, 20000, 6000}}) {
    const Tensor scores = stress_scores(c.batch, c.K, 500 + static_cast<uint64_t>(c.K));
    for (const SamplingVariant variant :
         {SamplingVariant::wta_crs, SamplingVariant::crs, SamplingVariant::topk, SamplingVariant::wta_wor}) {
      CAPTURE(c.batch);
      CAPTURE(c.K);
      CAPTURE(c.k);
      CAPTURE(static_cast<int>(variant));
      check_same_sample(scores, {c.k, 0.05, variant}, 1234, 7);
    }
  }
  // All-zero items, alpha = 0 with the mass in the top k, and row norms as scores.
  check_same_sample(zeros({4, 197}), {59}, 3, 4);
  check_same_sample(from_vector<float>({0, 5, 0, 1, 0, 2, 0, 0}, {1, 8}), {3, 0.0}, 3, 4);
  check_same_sample(row_norms(random_tensor({16, 197, 64}, 9)), {59}, 3, 5);
}

TEST_CASE("row helpers: CUDA matches CPU") {
  for (const DType dtype : {DType::f32, DType::bf16, DType::f64}) {
    CAPTURE(dtype_name(dtype));
    const Tensor x = random_tensor({8, 197, 96}, 20, -2, 2, dtype);
    const Tensor g = random_tensor({8, 197, 40}, 21, -2, 2, dtype);
    const RowSample sample = sample_rows(row_norms(x), {59}, 1, 2);
    const Tensor cpu_norms = row_norms(x), cpu_rows = gather_rows(x, sample.indices);
    const Tensor cpu_scaled = gather_scaled_rows(g, sample.indices, sample.weights);
    const Tensor cpu_ema = full({197}, 0.5);
    update_row_norm_ema(cpu_ema, g, 0.9);
    PoisonGuard poison(kCuda);
    const Tensor cuda_ema = full({197}, 0.5, DType::f32, kCuda);
    update_row_norm_ema(cuda_ema, g.to(kCuda), 0.9);
    CHECK(relative_error(host_values(row_norms(x.to(kCuda))), host_values(cpu_norms)) < 1e-5);
    const Tensor scale = random_tensor({197}, 23, 0.5, 2.0);
    CHECK(relative_error(host_values(row_norms(x.to(kCuda), scale.to(kCuda))), host_values(row_norms(x, scale))) <
          1e-5);
    CHECK(host_values(gather_rows(x.to(kCuda), sample.indices.to(kCuda))) == host_values(cpu_rows));
    CHECK(relative_error(host_values(gather_scaled_rows(g.to(kCuda), sample.indices.to(kCuda), sample.weights.to(kCuda))),
                         host_values(cpu_scaled)) < 1e-5);
    CHECK(relative_error(host_values(cuda_ema), host_values(cpu_ema)) < 1e-5);
  }
  // Rows of a length that 16-byte vectors do not divide (the one-element kernels).
  for (const DType dtype : {DType::f32, DType::bf16}) {
    CAPTURE(dtype_name(dtype));
    const Tensor x = random_tensor({4, 65, 37}, 24, -2, 2, dtype);
    const RowSample sample = sample_rows(row_norms(x), {19}, 1, 3);
    CHECK(relative_error(host_values(row_norms(x.to(kCuda))), host_values(row_norms(x))) < 1e-5);
    CHECK(host_values(gather_rows(x.to(kCuda), sample.indices.to(kCuda))) == host_values(gather_rows(x, sample.indices)));
    CHECK(relative_error(host_values(gather_scaled_rows(x.to(kCuda), sample.indices.to(kCuda), sample.weights.to(kCuda))),
                         host_values(gather_scaled_rows(x, sample.indices, sample.weights))) < 1e-5);
  }
  // A long row (the ViT-B fc2 input, D = 3072) and more positions than rows.
  const Tensor wide = random_tensor({1, 300, 3072}, 22);
  CHECK(relative_error(host_values(row_norms(wide.to(kCuda))), host_values(row_norms(wide))) < 1e-5);
  const Tensor cpu_ema = ones({400}), cuda_ema = ones({400}, DType::f32, kCuda);
  update_row_norm_ema(cpu_ema, wide, 0.8);
  update_row_norm_ema(cuda_ema, wide.to(kCuda), 0.8);
  CHECK(relative_error(host_values(cuda_ema), host_values(cpu_ema)) < 1e-5);
}

TEST_CASE("CUDA sampler with a device counter: the CPU's draws for the counter's value, advanced on the device") {
  const Tensor scores = random_tensor({4, 300}, 31, 0, 1);
  const SamplingConfig config{40};
  const Tensor counter = from_vector<int64_t>({11}, {1}).to(kCuda);
  for (int64_t call = 0; call < 2; ++call) {
    CAPTURE(call);
    const RowSample cpu = sample_rows(scores, config, 8, (uint64_t{3} << 32) | static_cast<uint64_t>(11 + call));
    const RowSample cuda = sample_rows(scores.to(kCuda), config, 8, uint64_t{3} << 32, counter);
    CHECK(cuda.indices.to_vector<int32_t>() == cpu.indices.to_vector<int32_t>());
    CHECK(cuda.weights.to_vector<float>() == cpu.weights.to_vector<float>());
  }
  CHECK(counter.to_vector<int64_t>() == std::vector<int64_t>{13});
}
