// Philox4x32-10 against the Random123 known-answer vectors, and the Generator's bookkeeping.
#include <doctest/doctest.h>

#include <cmath>

#include "core/philox.h"
#include "core/tensor.h"

using namespace tg;

TEST_CASE("Philox4x32-10 known-answer tests (Random123 kat_vectors)") {
  philox::Block zero = philox::generate(0, 0, 0);
  CHECK(zero.w[0] == 0x6627e8d5u);
  CHECK(zero.w[1] == 0xe169c58du);
  CHECK(zero.w[2] == 0xbc57ac4cu);
  CHECK(zero.w[3] == 0x9b00dbd8u);
  philox::Block ones = philox::generate(~0ull, ~0ull, ~0ull);
  CHECK(ones.w[0] == 0x408f276du);
  CHECK(ones.w[1] == 0x41c83b0eu);
  CHECK(ones.w[2] == 0xa20bc7c6u);
  CHECK(ones.w[3] == 0x6d5451fdu);
  // ctr = (243f6a88, 85a308d3, 13198a2e, 03707344), key = (a4093822, 299f31d0)
  philox::Block pi = philox::generate(0x299f31d0a4093822ull, 0x85a308d3243f6a88ull, 0x0370734413198a2eull);
  CHECK(pi.w[0] == 0xd16cfe09u);
  CHECK(pi.w[1] == 0x94fdccebu);
  CHECK(pi.w[2] == 0x5001e420u);
  CHECK(pi.w[3] == 0x24126ea1u);
}

TEST_CASE("generator reserves disjoint blocks and replays from (seed, offset)") {
  Generator gen(42);
  const Tensor a = rand({10}, DType::f32, Device::cpu(), gen);  // 3 blocks
  CHECK(gen.offset() == 3);
  const Tensor b = randn({5}, DType::f32, Device::cpu(), gen);  // 3 blocks
  CHECK(gen.offset() == 6);
  gen.set_offset(0);
  CHECK(rand({10}, DType::f32, Device::cpu(), gen).to_vector<float>() == a.to_vector<float>());
  CHECK(randn({5}, DType::f32, Device::cpu(), gen).to_vector<float>() == b.to_vector<float>());
  gen.manual_seed(43);
  CHECK(rand({10}, DType::f32, Device::cpu(), gen).to_vector<float>() != a.to_vector<float>());
}

TEST_CASE("uniform and normal fills have the right moments") {
  Generator gen(7);
  const auto u = rand({200000}, DType::f64, Device::cpu(), gen, -1, 3).to_vector<double>();
  const auto n = randn({200000}, DType::f64, Device::cpu(), gen, 2, 0.5).to_vector<double>();
  auto moments = [](const std::vector<double>& v) {
    double mean = 0, var = 0;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    for (double x : v) var += (x - mean) * (x - mean);
    return std::pair{mean, var / static_cast<double>(v.size())};
  };
  auto [umean, uvar] = moments(u);
  CHECK(umean == doctest::Approx(1.0).epsilon(0.01));
  CHECK(uvar == doctest::Approx(16.0 / 12.0).epsilon(0.01));
  for (double x : u) REQUIRE((x >= -1 && x < 3));
  auto [nmean, nvar] = moments(n);
  CHECK(nmean == doctest::Approx(2.0).epsilon(0.01));
  CHECK(nvar == doctest::Approx(0.25).epsilon(0.02));
  CHECK_THROWS_AS(rand({2}, DType::i32), TypeError);
}
