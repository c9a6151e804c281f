// Typed errors and their messages.
#include <doctest/doctest.h>

#include "core/tensor.h"

using namespace tg;

TEST_CASE("TG_CHECK throws the named type with the concatenated message") {
  auto check = [](int got) { TG_CHECK(got == 3, ShapeError, "expected 3 dims, got ", got); };
  CHECK_NOTHROW(check(3));
  CHECK_THROWS_WITH_AS(check(2), "expected 3 dims, got 2", ShapeError);
  CHECK_THROWS_AS(check(2), Error);  // every typed error is a tg::Error
}

TEST_CASE("TG_INTERNAL_ASSERT names the condition and the location") {
  auto broken = [] { TG_INTERNAL_ASSERT(1 + 1 == 3, "arithmetic"); };
  try {
    broken();
    FAIL("expected InternalError");
  } catch (const InternalError& e) {
    const std::string message = e.what();
    CHECK(message.find("1 + 1 == 3") != std::string::npos);
    CHECK(message.find("test_errors.cpp:") != std::string::npos);
    CHECK(message.find("arithmetic") != std::string::npos);
  }
}

TEST_CASE("user errors from tensors carry expected and actual values") {
  const Tensor t = zeros({2, 3});
  CHECK_THROWS_WITH_AS(t.raw_view({4, 2}), "cannot view/reshape shape [2, 3] (6 elements) as [4, 2] (8 elements)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(t.size(2), "dim 2 is out of range for a tensor with 2 dimension(s): expected a value in [-2, 1]",
                       IndexError);
  CHECK_THROWS_WITH_AS(t.data<int32_t>(), "data<T>(): expected dtype i32, got f32", TypeError);
  CHECK_THROWS_WITH_AS(t.item(), "item(): expected a tensor with one element, got shape [2, 3] (6 elements)",
                       ValueError);
  CHECK_THROWS_WITH_AS(Device::parse("gpu0"), "invalid device 'gpu0': expected cpu, cuda or cuda:N", ValueError);
  CHECK_THROWS_WITH_AS(dtype_from_name("f16"), "unknown dtype 'f16': expected one of f32, f64, bf16, i32, i64, u8",
                       ValueError);
  CHECK_THROWS_AS(Tensor().shape(), ValueError);
}

TEST_CASE("a CUDA device without CUDA support is a clear error") {
  if (cuda_is_available()) return;  // covered by the CUDA suite where a GPU exists
  const std::string expected = built_with_cuda()
      ? "device cuda:0 requested, but no CUDA device is available in this process"
      : "device cuda:0 requested, but tapegrad was built without CUDA (configure with -DTAPEGRAD_CUDA=ON)";
  CHECK_THROWS_WITH(zeros({2}, DType::f32, Device::cuda(0)), expected.c_str());
}
