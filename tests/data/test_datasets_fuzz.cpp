// The dataset readers under a few thousand deterministic mutations of valid files (IDX plain and
// gzip, CIFAR-10, CIFAR-100): each mutant loads or raises tg::IoError (tests/support/fuzz.h).
#include <doctest/doctest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "data/datasets.h"
#include "tests/support/fuzz.h"

using namespace tg;
using namespace tg::data;
namespace fs = std::filesystem;

namespace {

struct FuzzDir {
  fs::path path = fs::temp_directory_path() / detail::concat("tapegrad-fuzz-", ::getpid());
  FuzzDir() { fs::create_directories(path); }
  ~FuzzDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<uint8_t> idx(uint32_t magic, const std::vector<uint32_t>& dims, size_t data_bytes, uint8_t seed) {
  std::vector<uint8_t> bytes;
  auto put = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<uint8_t>(v >> s));
  };
  put(magic);
  for (uint32_t d : dims) put(d);
  for (size_t i = 0; i < data_bytes; ++i) bytes.push_back(static_cast<uint8_t>((i * 13 + seed) % 10));
  return bytes;
}

void write(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
}

std::vector<uint8_t> gzip(const std::vector<uint8_t>& plain) {
  uLongf size = compressBound(static_cast<uLong>(plain.size())) + 32;
  std::vector<uint8_t> out(size);
  z_stream z{};
  REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  z.next_in = const_cast<Bytef*>(plain.data());
  z.avail_in = static_cast<uInt>(plain.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void check_outcome(const test::FuzzOutcome& o, int count) {
  MESSAGE(o.loaded << " of " << count << " mutants loaded, " << o.rejected << " rejected with IoError");
  CHECK(o.loaded + o.rejected == count);
  CHECK(o.rejected > count / 2);  // most mutations break the file, and the reader notices
}

}  // namespace

TEST_CASE("fuzz: IDX image and label files, plain and gzip, load or raise IoError") {
  FuzzDir dir;
  const std::vector<uint8_t> images = idx(0x803, {3, 4, 5}, 60, 1), labels = idx(0x801, {3}, 3, 2);
  write(dir.file("labels"), labels);
  write(dir.file("images"), images);
  const std::vector<test::HeaderField> image_fields = {{0, 4, true}, {4, 4, true}, {8, 4, true}, {12, 4, true}};
  const auto with_labels = [&](const std::string& path) { load_idx(path, dir.file("labels"), 10, "fuzz"); };
  check_outcome(test::fuzz_reader(images, dir.file("mutant"), 1500, with_labels, image_fields), 1500);
  const auto with_images = [&](const std::string& path) { load_idx(dir.file("images"), path, 10, "fuzz"); };
  check_outcome(test::fuzz_reader(labels, dir.file("mutant"), 500, with_images, {{0, 4, true}, {4, 4, true}}), 500);
  const std::vector<uint8_t> gz = gzip(images);
  const size_t n = gz.size();
  // gzip's trailer: CRC-32 and the uncompressed size, little-endian.
  check_outcome(test::fuzz_reader(gz, dir.file("mutant.gz"), 1000, with_labels, {{n - 8, 4, false}, {n - 4, 4, false}}),
                1000);
}

TEST_CASE("fuzz: CIFAR-10 and CIFAR-100 record files load or raise IoError") {
  FuzzDir dir;
  std::vector<uint8_t> cifar10, cifar100;
  for (uint8_t r = 0; r < 3; ++r) {
    cifar10.push_back(r);
    cifar100.insert(cifar100.end(), {static_cast<uint8_t>(r + 5), static_cast<uint8_t>(r * 30)});
    for (int p = 0; p < 3072; ++p) {
      cifar10.push_back(static_cast<uint8_t>(p * 7 + r));
      cifar100.push_back(static_cast<uint8_t>(p * 3 + r));
    }
  }
  const std::vector<test::HeaderField> labels10 = {{0, 1, false}, {3073, 1, false}, {6146, 1, false}};
  check_outcome(test::fuzz_reader(cifar10, dir.file("test_batch.bin"), 1000,
                                  [&](const std::string&) { load_cifar10(dir.path.string(), Split::test); }, labels10),
                1000);
  const std::vector<test::HeaderField> labels100 = {{0, 2, false}, {3074, 2, false}, {6148, 2, false}};
  for (const bool coarse : {false, true})
    check_outcome(test::fuzz_reader(cifar100, dir.file("test.bin"), 400,
                                    [&](const std::string&) { load_cifar100(dir.path.string(), Split::test, coarse); },
                                    labels100),
                  400);
}
