// Views share storage; reshape/contiguous copy only when they must; printing.
#include <doctest/doctest.h>

#include <numeric>

#include "core/tensor.h"

using namespace tg;

namespace {
Tensor iota_tensor(const Shape& shape) {
  std::vector<float> values(static_cast<size_t>(shape.numel()));
  std::iota(values.begin(), values.end(), 0.0f);
  return from_vector(values, shape);
}
}  // namespace

TEST_CASE("views share storage and see writes") {
  const Tensor t = iota_tensor({2, 3, 4});
  const Tensor v = t.raw_view({6, 4});
  const Tensor s = t.raw_slice(2, 1, 3);
  const Tensor p = t.raw_permute({2, 0, 1});
  const Tensor n = t.raw_narrow(1, 1, 2);
  for (const Tensor& view : {v, s, p, n}) CHECK(view.shares_storage(t));
  CHECK(s.shape() == Shape{2, 3, 2});
  CHECK_FALSE(s.is_contiguous());
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Strides{1, 12, 4});
  t.raw_select(0, 1).raw_select(0, 2).fill_(-1.0);  // row t[1, 2, :]
  CHECK(v.raw_select(0, 5).to_vector<float>() == std::vector<float>{-1, -1, -1, -1});
  CHECK(p.raw_select(0, 3).raw_select(0, 1).to_vector<float>() == std::vector<float>{15, 19, -1});
}

TEST_CASE("slice clamps like Python and supports steps and negative indices") {
  const Tensor t = iota_tensor({10});
  CHECK(t.raw_slice(0, 2, 100).to_vector<float>() == std::vector<float>{2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(t.raw_slice(0, -3, 10).to_vector<float>() == std::vector<float>{7, 8, 9});
  CHECK(t.raw_slice(0, 1, 8, 3).to_vector<float>() == std::vector<float>{1, 4, 7});
  CHECK(t.raw_slice(0, 5, 2).numel() == 0);
  CHECK_THROWS_AS(t.raw_narrow(0, 8, 3), IndexError);
}

TEST_CASE("contiguous copies only when needed") {
  const Tensor t = iota_tensor({3, 4});
  CHECK(t.raw_contiguous().same(t));
  const Tensor tt = t.raw_transpose(0, 1);
  const Tensor c = tt.raw_contiguous();
  CHECK_FALSE(c.shares_storage(t));
  CHECK(c.is_contiguous());
  CHECK(c.to_vector<float>() == std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
}

TEST_CASE("reshape views when strides allow and copies otherwise") {
  const Tensor t = iota_tensor({2, 3, 4});
  const Tensor r = t.raw_reshape({2, 12});
  CHECK(r.shares_storage(t));
  // A slice along the last dim can still merge its leading dims without a copy.
  const Tensor s = t.raw_slice(2, 0, 2);          // [2, 3, 2] with strides [12, 4, 1]
  const Tensor merged = s.raw_reshape({6, 2});
  CHECK(merged.shares_storage(t));
  CHECK(merged.strides() == Strides{4, 1});
  // Transposed data cannot be flattened without a copy; view() refuses, reshape() copies.
  const Tensor tt = t.raw_transpose(1, 2);
  CHECK_THROWS_AS(tt.raw_view({24}), ShapeError);
  const Tensor flat = tt.raw_reshape({-1});
  CHECK_FALSE(flat.shares_storage(t));
  CHECK(flat.to_vector<float>()[1] == 4.0f);
  CHECK(t.raw_reshape({-1, 4}).shape() == Shape{6, 4});
  CHECK_THROWS_AS(t.raw_reshape({-1, -1}), ShapeError);
  CHECK_THROWS_AS(t.raw_reshape({5, -1}), ShapeError);
}

TEST_CASE("unsqueeze, squeeze, expand and select") {
  const Tensor t = iota_tensor({3});
  const Tensor row = t.raw_unsqueeze(0);
  CHECK(row.shape() == Shape{1, 3});
  const Tensor e = row.raw_expand({4, 3});
  CHECK(e.strides() == Strides{0, 1});
  CHECK(e.raw_contiguous().to_vector<float>() == std::vector<float>{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2});
  CHECK(row.raw_squeeze(0).shape() == Shape{3});
  CHECK_THROWS_AS(t.raw_unsqueeze(1).raw_expand({3, 2}).raw_squeeze(0), ShapeError);
  CHECK_THROWS_AS(t.raw_expand({2, 4}), ShapeError);
  CHECK(t.raw_select(0, -1).item() == 2.0);
}

TEST_CASE("dtype conversion, clone and fill") {
  const Tensor t = from_vector<float>({1.5f, -2.5f, 3.0f}, {3});
  CHECK(t.to(DType::i32).to_vector<int32_t>() == std::vector<int32_t>{1, -2, 3});
  CHECK(t.to(DType::f64).to_vector<double>() == std::vector<double>{1.5, -2.5, 3.0});
  CHECK(t.to(DType::bf16).to(DType::f32).to_vector<float>() == std::vector<float>{1.5f, -2.5f, 3.0f});
  const Tensor c = t.clone();
  c.fill_(7);
  CHECK(t.to_vector<float>()[0] == 1.5f);
  CHECK(c.to_vector<float>() == std::vector<float>{7, 7, 7});
  CHECK(arange(0, 5, 2, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{0, 2, 4});
}

TEST_CASE("printing shows header and summarized values") {
  const Tensor t = iota_tensor({2, 3});
  CHECK(t.str() == "Tensor(shape=[2, 3], dtype=f32, device=cpu)\n[[0, 1, 2],\n [3, 4, 5]]");
  const std::string big = iota_tensor({100}).str();
  CHECK(big.find("[0, 1, 2, ..., 97, 98, 99]") != std::string::npos);
  CHECK(from_vector<int64_t>({7}, {}).str() == "Tensor(shape=[], dtype=i64, device=cpu)\n7");
}
