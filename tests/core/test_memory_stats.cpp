// Tensors draw from the CPU caching allocator; stats flatten with PyTorch's names; the summary.
#include <doctest/doctest.h>

#include "core/allocator.h"
#include "core/tensor.h"

using namespace tg;

TEST_CASE("tensor storage comes from the device allocator and returns to it") {
  CachingAllocator& alloc = allocator_for(Device::cpu());
  const int64_t before = alloc.stats().allocated_bytes[0].current;
  {
    const Tensor t = empty({1000}, DType::f32);                  // 4000 B -> 4096 B block
    CHECK(alloc.stats().allocated_bytes[0].current == before + 4096);
    CHECK(alloc.stats().requested_bytes[0].current >= 4000);
    const Tensor view = t.raw_slice(0, 10, 20);
    CHECK(alloc.stats().allocated_bytes[0].current == before + 4096);  // views allocate nothing
  }
  CHECK(alloc.stats().allocated_bytes[0].current == before);
}

TEST_CASE("stats flatten to PyTorch's key names") {
  MemoryStats s;
  s.allocated_bytes[0].update(1024);
  s.allocated_bytes[0].update(-512);
  s.num_ooms = 2;
  const auto m = s.as_map();
  CHECK(m.at("allocated_bytes.all.current") == 512);
  CHECK(m.at("allocated_bytes.all.peak") == 1024);
  CHECK(m.at("allocated_bytes.all.allocated") == 1024);
  CHECK(m.at("allocated_bytes.all.freed") == 512);
  CHECK(m.at("inactive_split_bytes.large_pool.current") == 0);
  CHECK(m.at("requested_bytes.small_pool.peak") == 0);
  CHECK(m.at("num_ooms") == 2);
  CHECK(m.count("num_device_alloc") == 1);
  CHECK(m.at("private_pool_reserved_bytes.current") == 0);
  CHECK(m.size() == 9 * 3 * 4 + 4 + 2 * 2);
}

TEST_CASE("memory_summary is a readable table") {
  CachingAllocator alloc(make_host_backing());
  void* p = alloc.allocate(3 * 1024 * 1024);
  const std::string table = alloc.memory_summary();
  CHECK(table.find("tapegrad memory summary, device cpu") != std::string::npos);
  CHECK(table.find("| Allocated memory          |   3.00 MiB |   3.00 MiB |   3.00 MiB |        0 B |") !=
        std::string::npos);
  CHECK(table.find("GPU reserved memory") != std::string::npos);
  CHECK(table.find("Non-releasable memory") != std::string::npos);
  CHECK(format_bytes(1536) == "1.50 KiB");
  alloc.deallocate(p);
}
