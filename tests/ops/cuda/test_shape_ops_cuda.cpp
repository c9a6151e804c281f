// Shape and indexing ops on CUDA against the CPU (forward and gradients, poisoned allocations)
// at ViT sizes; cast; index_select's backward bitwise reproducible; out-of-range indices clamped away.
#include <doctest/doctest.h>

#include "ops/shape_ops.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::check_cuda_matches_cpu;
using test::random_tensor;

namespace {
Tensor param(const Shape& shape, uint64_t seed) {
  Tensor t = random_tensor(shape, seed);
  t.set_requires_grad(true);
  return t;
}

// `count` indices in [0, range), unordered, with many duplicates when count > range.
Tensor scattered_indices(int64_t count, int64_t range, DType dtype = DType::i64) {
  std::vector<int64_t> values(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) values[static_cast<size_t>(k)] = (k * 7919 + (k * k) % 13) % range;
  return from_vector<int64_t>(values, {count}).to(dtype);
}

using Fn = std::function<Tensor(const Tensor&)>;
}  // namespace

TEST_CASE("views and copies: CUDA matches CPU on ViT-sized activations") {
  const Tensor x = param({4, 197, 192}, 200);
  const std::vector<std::pair<const char*, Fn>> fns = {
      {"reshape", [](const Tensor& t) { return reshape(t, {4, 197, 3, 64}); }},
      {"reshape_copy", [](const Tensor& t) { return reshape(transpose(t, 1, 2), {4, -1}); }},
      {"view", [](const Tensor& t) { return view(t, {788, 192}); }},
      {"flatten", [](const Tensor& t) { return flatten(t, 0, 1); }},
      {"permute", [](const Tensor& t) { return contiguous(permute(reshape(t, {4, 197, 3, 64}), {2, 0, 1, 3})); }},
      {"transpose", [](const Tensor& t) { return contiguous(transpose(t, 1, 2)); }},
      {"unsqueeze_squeeze", [](const Tensor& t) { return squeeze(unsqueeze(t, 1), 1); }},
      {"expand", [](const Tensor& t) { return expand(unsqueeze(select(t, 1, 0), 1), {4, 50, 192}); }},
      {"slice", [](const Tensor& t) { return slice(t, 1, 1, 197, 3); }},
      {"narrow", [](const Tensor& t) { return narrow(t, 2, 64, 64); }},
      {"select", [](const Tensor& t) { return select(t, 1, 0); }},  // the cls token
  };
  for (const auto& [name, fn] : fns) {
    CAPTURE(name);
    check_cuda_matches_cpu([&](const std::vector<Tensor>& in) { return fn(in[0]); }, {x});
  }
}

TEST_CASE("cast: CUDA matches CPU, f32 -> bf16 -> f32 forward and the gradient back in f32") {
  check_cuda_matches_cpu(
      [](const std::vector<Tensor>& in) { return cast(cast(in[0], DType::bf16), DType::f32); },
      {param({4, 65, 192}, 90)}, 1e-12);  // the same rounding on both: equal
}

TEST_CASE("concat: CUDA matches CPU (cls token prepend, dims 0 and -1)") {
  const Tensor cls = param({4, 1, 192}, 210), patches = param({4, 64, 192}, 211);
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return concat(in, 1); }, {cls, patches});
  const Tensor a = param({3, 5, 33}, 212), b = param({2, 5, 33}, 213), c = param({7, 5, 33}, 214);
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return concat(in, 0); }, {a, b, c});
  const Tensor d = param({3, 5, 1}, 215), e = param({3, 5, 40}, 216);
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return concat({in[0], transpose(in[1], 0, 2), in[2]}, -1); },
                         {d, param({33, 5, 3}, 217), e});
}

TEST_CASE("index_select: CUDA matches CPU with many duplicates, rows and inner dims") {
  // 3000 of 12608 rows (ViT-B tokens of a batch of 64) of width 768, drawn from 2000 rows.
  const Tensor rows = param({12608, 768}, 220);
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return index_select(in[0], 0, in[1]); },
                         {rows, scattered_indices(3000, 2000)});
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return index_select(in[0], 0, in[1]); },
                         {param({1000, 33}, 221), scattered_indices(2500, 1000, DType::i32)});
  // Token selection along dim 1, and along the last dim (inner == 1).
  const Tensor tokens = param({4, 197, 192}, 222);
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return index_select(in[0], 1, in[1]); },
                         {tokens, scattered_indices(150, 197)});
  check_cuda_matches_cpu([](const std::vector<Tensor>& in) { return index_select(in[0], -1, in[1]); },
                         {tokens, scattered_indices(300, 192, DType::i32)});
}

TEST_CASE("index_select forward moves every dtype exactly, whatever the row width") {
  // Row widths of 1, 3, 6, 8 and 16 bytes exercise every vector width of the gather.
  for (int64_t inner : {1, 3, 6, 8, 16}) {
    CAPTURE(inner);
    const Tensor x = random_tensor({50, inner}, 230, -100, 100);
    const Tensor indices = scattered_indices(77, 50);
    for (DType dtype : {DType::u8, DType::bf16, DType::i32, DType::f64}) {
      CAPTURE(dtype_name(dtype));
      const Tensor cpu = index_select(x.to(dtype), 0, indices).to(DType::f64);
      const Tensor cuda = index_select(x.to(dtype).to(Device::cuda(0)), 0, indices.to(Device::cuda(0)));
      CHECK(cuda.to(Device::cpu()).to(DType::f64).to_vector<double>() == cpu.to_vector<double>());
    }
    // A source starting at an odd byte offset (a narrowed view) takes the narrow vector paths.
    const Tensor bytes = x.to(DType::u8);
    const Tensor odd_indices = scattered_indices(77, 49, DType::i32);
    const Tensor on_cuda = index_select(narrow(bytes.to(Device::cuda(0)), 0, 1, 49), 0, odd_indices.to(Device::cuda(0)));
    CHECK(on_cuda.to(Device::cpu()).to_vector<uint8_t>() ==
          index_select(narrow(bytes, 0, 1, 49), 0, odd_indices).to_vector<uint8_t>());
  }
}

TEST_CASE("index_select backward on CUDA is bitwise reproducible and equal to the CPU's order of sums") {
  const Tensor indices = scattered_indices(3000, 500).to(Device::cuda(0));
  const Tensor grad = random_tensor({3000, 768}, 240).to(Device::cuda(0));
  auto run = [&] {
    Tensor x = zeros({12608, 768}, DType::f32, Device::cuda(0));
    x.set_requires_grad(true);
    backward(index_select(x, 0, indices), grad);
    return x.grad().to(Device::cpu()).to_vector<float>();
  };
  const std::vector<float> first = run(), second = run();
  CHECK(first == second);
  Tensor x_cpu = zeros({12608, 768});
  x_cpu.set_requires_grad(true);
  backward(index_select(x_cpu, 0, indices.to(Device::cpu())), grad.to(Device::cpu()));
  CHECK(first == x_cpu.grad().to_vector<float>());
}

TEST_CASE("index_select on CUDA clamps out-of-range indices away: zero rows, dropped gradients") {
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {5, 2}, Device::cuda(0));
  x.set_requires_grad(true);
  const Tensor indices = from_vector<int64_t>({1, 7, -1, 1, 5}, {5}, Device::cuda(0));
  const Tensor out = index_select(x, 0, indices);
  CHECK(out.to(Device::cpu()).to_vector<float>() == std::vector<float>{3, 4, 0, 0, 0, 0, 3, 4, 0, 0});
  backward(out, from_vector<float>({1, 2, 10, 20, 100, 200, 1000, 2000, 7, 7}, {5, 2}, Device::cuda(0)));
  CHECK(x.grad().to(Device::cpu()).to_vector<float>() == std::vector<float>{0, 0, 1001, 2002, 0, 0, 0, 0, 0, 0});
}
