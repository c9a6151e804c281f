// Tensor factories, copies and views on this executable's device (CPU suite: cpu; CUDA suite:
// cuda:0), checked against host values; on CUDA also host<->device round trips.
#include <doctest/doctest.h>

#include <numeric>

#include "core/allocator.h"
#include "core/tensor_conversions.h"
#include "tests/support/test_support.h"

using namespace tg;
using tg::test::test_device;

TEST_CASE("factories fill every element on the device") {
  const Device dev = test_device();
  CHECK(zeros({3, 5}, DType::f32, dev).to_vector<float>() == std::vector<float>(15, 0.0f));
  CHECK(ones({7}, DType::i64, dev).to_vector<int64_t>() == std::vector<int64_t>(7, 1));
  CHECK(full({2, 2}, 2.5, DType::f64, dev).to_vector<double>() == std::vector<double>(4, 2.5));
  CHECK(full({3}, 1.0, DType::bf16, dev).to(DType::f32).to_vector<float>() == std::vector<float>(3, 1.0f));
  CHECK(arange(0, 4, 1, DType::i32, dev).to_vector<int32_t>() == std::vector<int32_t>{0, 1, 2, 3});
  const Tensor e = empty({0, 4}, DType::f32, dev);
  CHECK(e.numel() == 0);
  CHECK(e.to_vector<float>().empty());
}

TEST_CASE("host -> device -> host round trips are exact for every dtype") {
  const Device dev = test_device();
  std::vector<float> values(1000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.37f - 100.0f;
  const Tensor host = from_vector(values, {10, 100});
  const Tensor there = host.to(dev);
  CHECK(there.device() == dev);
  CHECK(there.to(Device::cpu()).to_vector<float>() == values);
  for (DType dtype : {DType::f64, DType::bf16, DType::i32, DType::i64, DType::u8}) {
    const Tensor converted_here = host.to(dtype);
    const Tensor converted_there = there.to(dtype).to(Device::cpu());
    CHECK(converted_there.dtype() == dtype);
    CHECK(converted_there.to(DType::f64).to_vector<double>() == converted_here.to(DType::f64).to_vector<double>());
  }
}

TEST_CASE("strided copies on the device match the host's") {
  const Device dev = test_device();
  std::vector<float> values(2 * 3 * 5);
  std::iota(values.begin(), values.end(), 1.0f);
  const Tensor host = from_vector(values, {2, 3, 5});
  const Tensor there = host.to(dev);
  const Tensor permuted = there.raw_permute({2, 0, 1}).raw_contiguous();
  CHECK(permuted.is_contiguous());
  CHECK(permuted.to_vector<float>() == host.raw_permute({2, 0, 1}).raw_contiguous().to_vector<float>());
  const Tensor sliced = there.raw_slice(2, 1, 5, 2).raw_slice(1, 0, 3, 2);
  CHECK(sliced.to_vector<float>() == host.raw_slice(2, 1, 5, 2).raw_slice(1, 0, 3, 2).to_vector<float>());
  // Copy into a strided destination, with conversion.
  const Tensor dst = zeros({5, 2, 3}, DType::f64, dev);
  dst.raw_permute({1, 2, 0}).copy_(there);
  CHECK(dst.to_vector<double>() == host.raw_permute({2, 0, 1}).to(DType::f64).raw_contiguous().to_vector<double>());
  // Broadcast copy (a stride-0 source) and a fill through a view.
  const Tensor row = from_vector<float>({1, 2, 3, 4, 5}, {5}).to(dev);
  const Tensor grid = empty({3, 5}, DType::f32, dev);
  grid.copy_(row);
  CHECK(grid.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5});
  grid.raw_slice(1, 0, 5, 2).fill_(-1);
  CHECK(grid.raw_select(0, 2).to_vector<float>() == std::vector<float>{-1, 2, -1, 4, -1});
  CHECK(grid.raw_select(0, 1).raw_select(0, 3).item() == 4.0);
}

TEST_CASE("layout changes with a contiguous innermost dim (16-byte vector copies on CUDA) match the host's") {
  const Device dev = test_device();
  std::vector<float> values(2 * 5 * 3 * 8);
  std::iota(values.begin(), values.end(), 0.5f);
  const Tensor host = from_vector(values, {2, 5, 3, 8});  // [B, T, H, hd]
  const Tensor there = host.to(dev);
  const auto expected = [&](const Tensor& t) { return t.raw_contiguous().to_vector<float>(); };
  // [B, T, H, hd] -> [B, H, T, hd] and back; bf16 has 8 elements per vector.
  CHECK(there.raw_permute({0, 2, 1, 3}).raw_contiguous().to_vector<float>() == expected(host.raw_permute({0, 2, 1, 3})));
  const Tensor heads = there.raw_permute({0, 2, 1, 3}).raw_contiguous();
  const Tensor back = empty({2, 5, 3, 8}, DType::f32, dev);
  back.raw_permute({0, 2, 1, 3}).copy_(heads);
  CHECK(back.to_vector<float>() == values);
  const Tensor bf = there.to(DType::bf16);
  CHECK(bf.raw_permute({0, 2, 1, 3}).raw_contiguous().to(DType::f32).to_vector<float>() ==
        expected(host.to(DType::bf16).raw_permute({0, 2, 1, 3}).to(DType::f32)));
  // Cases that must take the element path: an innermost dim that is not a whole number of
  // vectors, and a source that starts mid-vector.
  CHECK(there.raw_narrow(3, 0, 6).raw_permute({0, 2, 1, 3}).raw_contiguous().to_vector<float>() ==
        expected(host.raw_narrow(3, 0, 6).raw_permute({0, 2, 1, 3})));
  CHECK(there.raw_narrow(3, 1, 4).raw_permute({0, 2, 1, 3}).raw_contiguous().to_vector<float>() ==
        expected(host.raw_narrow(3, 1, 4).raw_permute({0, 2, 1, 3})));
}

TEST_CASE("to_dtype converts many tensors at once (multi-tensor launches on CUDA) as Tensor::to does each") {
  const Device dev = test_device();
  Generator g(5);
  std::vector<Tensor> tensors;
  // Sizes below, at and above a chunk (64·256 elements), 60 of them (more than one launch's 48),
  // a bf16 one (a second source dtype), one already in the target dtype, a strided view, and an
  // undefined slot.
  for (int i = 0; i < 60; ++i) tensors.push_back(rand({(i % 7) * 4099 + 1}, DType::f32, dev, g, -3, 3));
  tensors.push_back(rand({33, 65}, DType::f32, dev, g).to(DType::f64));
  tensors.push_back(rand({5, 3}, DType::bf16, dev, g));
  tensors.push_back(rand({6, 4}, DType::f32, dev, g).raw_transpose(0, 1));
  tensors.push_back(Tensor());
  const std::vector<Tensor> converted = to_dtype(tensors, DType::bf16);
  REQUIRE(converted.size() == tensors.size());
  for (size_t i = 0; i + 1 < tensors.size(); ++i) {
    CAPTURE(i);
    CHECK(converted[i].dtype() == DType::bf16);
    CHECK(converted[i].shape() == tensors[i].shape());
    CHECK(converted[i].to(DType::f32).raw_contiguous().to_vector<float>() ==
          tensors[i].to(DType::bf16).to(DType::f32).raw_contiguous().to_vector<float>());
  }
  CHECK(converted[61].same(tensors[61]));  // already bf16: the tensor itself
  CHECK_FALSE(converted.back().defined());
}

TEST_CASE("tensors on the device are counted by that device's allocator") {
  const Device dev = test_device();
  CachingAllocator& alloc = allocator_for(dev);
  const int64_t before = alloc.stats().allocated_bytes[0].current;
  {
    const Tensor t = empty({256, 1024}, DType::f32, dev);  // exactly 1 MiB
    CHECK(alloc.stats().allocated_bytes[0].current == before + 1024 * 1024);
  }
  CHECK(alloc.stats().allocated_bytes[0].current == before);
}
