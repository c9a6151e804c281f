// Shapes, strides, dtypes and devices.
#include <doctest/doctest.h>

#include "core/strided.h"
#include "core/tensor.h"

using namespace tg;

TEST_CASE("contiguous strides and contiguity") {
  CHECK(contiguous_strides({2, 3, 4}) == Strides{12, 4, 1});
  CHECK(contiguous_strides({}) == Strides{});
  CHECK(is_contiguous({2, 3}, {3, 1}));
  CHECK_FALSE(is_contiguous({2, 3}, {1, 2}));
  CHECK(is_contiguous({2, 1, 3}, {3, 99, 1}));  // size-1 dims may have any stride
  CHECK(Shape({2, 3, 4}).numel() == 24);
  CHECK(Shape({}).numel() == 1);
  CHECK(Shape({5, 0}).numel() == 0);
  CHECK(Shape({2, 3}).str() == "[2, 3]");
  CHECK(wrap_dim(-1, 3) == 2);
}

TEST_CASE("dtype sizes, names and bf16 rounding") {
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(dtype_size(DType::i64) == 8);
  CHECK(std::string(dtype_name(DType::u8)) == "u8");
  CHECK(dtype_from_name("float32") == DType::f32);
  CHECK(static_cast<float>(bf16(1.0f)) == 1.0f);
  CHECK(static_cast<float>(bf16(3.140625f)) == 3.140625f);      // exactly representable
  CHECK(static_cast<float>(bf16(1.00390625f)) == 1.0f);         // halfway: rounds to even
  CHECK(static_cast<float>(bf16(1.01171875f)) == 1.015625f);    // halfway: rounds to even (up)
  CHECK(convert<int32_t>(-2.7) == -2);
  CHECK(convert<uint8_t>(200.0f) == 200);
}

TEST_CASE("devices parse and print") {
  CHECK(Device::parse("cpu") == Device::cpu());
  CHECK(Device::parse("cuda") == Device::cuda(0));
  CHECK(Device::parse("cuda:3") == Device::cuda(3));
  CHECK(Device::cuda(1).str() == "cuda:1");
}

TEST_CASE("copy geometry merges contiguous dims and drops size-1 dims") {
  const Strides contiguous{12, 12, 4, 1};
  const auto g = make_geometry<2>({2, 1, 3, 4}, {&contiguous, &contiguous});
  CHECK(g.ndim == 1);
  CHECK(g.sizes[0] == 24);
  const Strides rows{4, 1}, columns{1, 3};
  const auto t = make_geometry<2>({3, 4}, {&rows, &columns});  // transposed source
  CHECK(t.ndim == 2);
  int64_t o[2];
  t.offsets(5, o);  // element (1, 1)
  CHECK(o[0] == 5);
  CHECK(o[1] == 4);
  std::vector<int64_t> walked;
  for_each_offset(t, [&](const int64_t (&offsets)[2]) { walked.push_back(offsets[1]); });
  CHECK(walked == std::vector<int64_t>{0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11});
}
