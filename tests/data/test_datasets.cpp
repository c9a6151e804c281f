// Dataset readers on files written here in the exact formats, and every kind of bad input
// (issue 14's regressions included: header sizes that overflow, empty dims, gzip trailing bytes,
// non-files named like data files, host memory running out).
#include <doctest/doctest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/datasets.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::data;
namespace fs = std::filesystem;

namespace {

// A fresh empty folder under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / detail::concat("tapegrad-data-", ::getpid(), "-", counter()++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  gzclose(f);
}

// CIFAR records: `label_bytes` label bytes then 3072 pixels; pixel p of record r = (r * 7 + p) % 256.
std::vector<uint8_t> cifar_records(const std::vector<std::vector<uint8_t>>& labels) {
  std::vector<uint8_t> bytes;
  for (size_t r = 0; r < labels.size(); ++r) {
    bytes.insert(bytes.end(), labels[r].begin(), labels[r].end());
    for (int p = 0; p < 3072; ++p) bytes.push_back(static_cast<uint8_t>((r * 7 + static_cast<size_t>(p)) % 256));
  }
  return bytes;
}

std::vector<uint8_t> idx_file(uint32_t magic, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> bytes;
  auto put = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<uint8_t>(v >> s));
  };
  put(magic);
  for (uint32_t d : dims) put(d);
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

std::string message_of(const std::function<void()>& f) { return test::thrown_message<IoError>(f, "(no IoError)"); }

}  // namespace

TEST_CASE("CIFAR-10 binary: values and labels read back exactly") {
  TempDir dir;
  const fs::path folder = dir.path / "cifar-10-batches-bin";
  fs::create_directories(folder);
  for (int b = 1; b <= 5; ++b)
    write_bytes((folder / detail::concat("data_batch_", b, ".bin")).string(),
                cifar_records({{static_cast<uint8_t>(b)}, {9}}));
  write_bytes((folder / "test_batch.bin").string(), cifar_records({{3}, {0}, {7}}));
  const ImageDataset train = load_cifar10(dir.path.string(), Split::train);  // parent folder works
  CHECK(train.size() == 10);
  CHECK(train.images.shape() == Shape{10, 3, 32, 32});
  CHECK(train.labels.to_vector<int64_t>() == std::vector<int64_t>{1, 9, 2, 9, 3, 9, 4, 9, 5, 9});
  CHECK(train.num_classes == 10);
  const ImageDataset test = load_cifar10(folder.string(), Split::test);
  CHECK(test.labels.to_vector<int64_t>() == std::vector<int64_t>{3, 0, 7});
  const auto pixels = test.images.raw_select(0, 2).raw_flatten().to_vector<uint8_t>();  // record 2
  for (int p = 0; p < 3072; p += 511) CHECK(pixels[static_cast<size_t>(p)] == (2 * 7 + p) % 256);
  // Channel planes: R first, then G, then B.
  CHECK(test.images.raw_select(0, 1).raw_select(0, 1).raw_select(0, 0).raw_select(0, 0).item() == (7 + 1024) % 256);
}

TEST_CASE("CIFAR-100 binary: fine and coarse labels") {
  TempDir dir;
  write_bytes(dir.file("train.bin"), cifar_records({{4, 0}, {1, 1}, {19, 99}}));
  write_bytes(dir.file("test.bin"), cifar_records({{8, 42}}));
  const ImageDataset fine = load_cifar100(dir.path.string(), Split::train, false);
  CHECK(fine.labels.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 99});
  CHECK(fine.num_classes == 100);
  const ImageDataset coarse = load_cifar100(dir.path.string(), Split::train, true);
  CHECK(coarse.labels.to_vector<int64_t>() == std::vector<int64_t>{4, 1, 19});
  CHECK(coarse.num_classes == 20);
  CHECK(coarse.name == "cifar100-coarse");
  CHECK(load_cifar100(dir.path.string(), Split::test, false).labels.item() == 42);
}

TEST_CASE("IDX files, plain and gzip") {
  TempDir dir;
  std::vector<uint8_t> pixels(3 * 4 * 5);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 3);
  write_gzip(dir.file("train-images-idx3-ubyte.gz"), idx_file(0x803, {3, 4, 5}, pixels));
  write_bytes(dir.file("train-labels-idx1-ubyte"), idx_file(0x801, {3}, {9, 0, 4}));
  const ImageDataset d = load_fashion_mnist(dir.path.string(), Split::train);
  CHECK(d.images.shape() == Shape{3, 1, 4, 5});
  CHECK(d.images.raw_flatten().to_vector<uint8_t>() == pixels);
  CHECK(d.labels.to_vector<int64_t>() == std::vector<int64_t>{9, 0, 4});
}

TEST_CASE("bad inputs stop with one clear message naming the file") {
  TempDir dir;
  // A folder without the expected files, with where to get them.
  const std::string missing = message_of([&] { load_cifar10(dir.path.string(), Split::train); });
  CHECK(missing.find(detail::concat("CIFAR-10 not found: '", dir.path.string(), "'")) == 0);
  CHECK(missing.find("has no data_batch_1.bin") != std::string::npos);
  CHECK(missing.find("cifar10_jpeg_to_bin.py") != std::string::npos);
  const std::string no_fashion = message_of([&] { load_fashion_mnist(dir.path.string(), Split::test); });
  CHECK(no_fashion.find("has no t10k-images-idx3-ubyte (nor t10k-images-idx3-ubyte.gz)") != std::string::npos);
  CHECK(no_fashion.find("apt-get install dataset-fashion-mnist") != std::string::npos);
  // A truncated CIFAR file.
  std::vector<uint8_t> truncated = cifar_records({{1}, {2}});
  truncated.resize(truncated.size() - 100);
  write_bytes(dir.file("test_batch.bin"), truncated);
  CHECK(message_of([&] { load_cifar10(dir.path.string(), Split::test); }) ==
        detail::concat("'", dir.file("test_batch.bin"), "' has 6046 bytes, not a whole number of 3073-byte records "
                       "(truncated or not a CIFAR file)"));
  // A label out of range.
  write_bytes(dir.file("test_batch.bin"), cifar_records({{1}, {10}}));
  CHECK(message_of([&] { load_cifar10(dir.path.string(), Split::test); }) ==
        detail::concat("'", dir.file("test_batch.bin"), "': record 1 has label 10, out of range for 10 classes"));
  // A wrong IDX magic number, a truncated IDX file, a count mismatch.
  write_bytes(dir.file("images"), idx_file(0x801, {2, 2, 2}, std::vector<uint8_t>(8, 1)));
  write_bytes(dir.file("labels"), idx_file(0x801, {2}, {1, 2}));
  CHECK(message_of([&] { load_idx(dir.file("images"), dir.file("labels"), 10, "x"); }) ==
        detail::concat("'", dir.file("images"), "': wrong magic number 0x801, expected 0x803 (an IDX file of u8 data with 3 dims)"));
  write_bytes(dir.file("images"), idx_file(0x803, {2, 2, 2}, std::vector<uint8_t>(7, 1)));
  CHECK(message_of([&] { load_idx(dir.file("images"), dir.file("labels"), 10, "x"); }) ==
        detail::concat("'", dir.file("images"), "' has 7 data bytes, expected 8 for shape [2, 2, 2] (truncated or corrupt)"));
  write_bytes(dir.file("images"), idx_file(0x803, {3, 2, 2}, std::vector<uint8_t>(12, 1)));
  CHECK(message_of([&] { load_idx(dir.file("images"), dir.file("labels"), 10, "x"); }) ==
        detail::concat("'", dir.file("images"), "' holds 3 images but '", dir.file("labels"), "' holds 2 labels"));
  // A truncated gzip stream.
  write_gzip(dir.file("whole.gz"), idx_file(0x803, {50, 20, 20}, std::vector<uint8_t>(20000, 7)));
  std::ifstream whole(dir.file("whole.gz"), std::ios::binary);
  std::vector<uint8_t> gz((std::istreambuf_iterator<char>(whole)), std::istreambuf_iterator<char>());
  gz.resize(gz.size() / 2);
  write_bytes(dir.file("cut.gz"), gz);
  const std::string cut = message_of([&] { load_idx(dir.file("cut.gz"), dir.file("labels"), 10, "x"); });
  CHECK(cut.find(detail::concat("cannot read '", dir.file("cut.gz"), "': ")) == 0);
  CHECK(cut.find("(corrupt or truncated gzip data?)") != std::string::npos);
}

TEST_CASE("synthetic data is deterministic and class-dependent; take_first makes subsets") {
  const ImageDataset a = make_synthetic(40, 3, 8, 4, 11), b = make_synthetic(40, 3, 8, 4, 11);
  CHECK(a.images.raw_flatten().to_vector<uint8_t>() == b.images.raw_flatten().to_vector<uint8_t>());
  CHECK(a.labels.to_vector<int64_t>()[5] == 1);
  CHECK(make_synthetic(40, 3, 8, 4, 12).images.raw_flatten().to_vector<uint8_t>() != a.images.raw_flatten().to_vector<uint8_t>());
  const ImageDataset head = take_first(a, 7);
  CHECK(head.size() == 7);
  CHECK(head.images.shares_storage(a.images));
  CHECK_THROWS_AS(make_synthetic(10, 3, 8, 1, 0), ValueError);
}

TEST_CASE("IDX sizes from the header are overflow-checked: dims (4, 2^31, 2^31) with no data are refused") {
  TempDir dir;
  write_bytes(dir.file("images"), idx_file(0x803, {4, 0x80000000u, 0x80000000u}, {}));
  write_bytes(dir.file("labels"), idx_file(0x801, {4}, {1, 2, 3, 4}));
  CHECK(message_of([&] { load_idx(dir.file("images"), dir.file("labels"), 10, "x"); }) ==
        detail::concat("'", dir.file("images"), "' has 0 data bytes, expected more than 2^63 for shape "
                       "[4, 2147483648, 2147483648] (truncated or corrupt)"));
}

TEST_CASE("IDX images of 0 x 28 pixels are refused, naming the dim") {
  TempDir dir;
  write_bytes(dir.file("images"), idx_file(0x803, {3, 0, 28}, {}));
  write_bytes(dir.file("labels"), idx_file(0x801, {3}, {1, 2, 3}));
  CHECK(message_of([&] { load_idx(dir.file("images"), dir.file("labels"), 10, "x"); }) ==
        detail::concat("'", dir.file("images"), "': IDX dim 1 of shape [3, 0, 28] is 0, expected a positive size "
                       "(an empty or corrupt file)"));
}

TEST_CASE("a gzip file with trailing garbage is refused like the plain file with extra bytes") {
  TempDir dir;
  write_bytes(dir.file("labels"), idx_file(0x801, {2}, {1, 2}));
  write_gzip(dir.file("images.gz"), idx_file(0x803, {2, 2, 2}, std::vector<uint8_t>(8, 1)));
  CHECK(load_idx(dir.file("images.gz"), dir.file("labels"), 10, "x").size() == 2);
  std::ofstream(dir.file("images.gz"), std::ios::binary | std::ios::app) << "xyz";
  CHECK(message_of([&] { load_idx(dir.file("images.gz"), dir.file("labels"), 10, "x"); }) ==
        detail::concat("cannot read '", dir.file("images.gz"), "': 3 bytes of trailing garbage after the end of the "
                       "gzip data"));
  // Two gzip members one after the other are one valid stream (as gzip -d reads them).
  std::vector<uint8_t> whole = idx_file(0x803, {2, 2, 2}, std::vector<uint8_t>(8, 1));
  write_gzip(dir.file("a.gz"), std::vector<uint8_t>(whole.begin(), whole.begin() + 10));
  write_gzip(dir.file("b.gz"), std::vector<uint8_t>(whole.begin() + 10, whole.end()));
  std::ofstream joined(dir.file("joined.gz"), std::ios::binary);
  joined << std::ifstream(dir.file("a.gz"), std::ios::binary).rdbuf() << std::ifstream(dir.file("b.gz"), std::ios::binary).rdbuf();
  joined.close();
  CHECK(load_idx(dir.file("joined.gz"), dir.file("labels"), 10, "x").images.raw_flatten().to_vector<uint8_t>() ==
        std::vector<uint8_t>(8, 1));
}

TEST_CASE("a folder or a FIFO named like a data file is reported as such, not as missing") {
  TempDir dir;
  fs::create_directories(dir.file("train-images-idx3-ubyte"));
  write_bytes(dir.file("train-labels-idx1-ubyte"), idx_file(0x801, {1}, {1}));
  CHECK(message_of([&] { load_fashion_mnist(dir.path.string(), Split::train); }) ==
        detail::concat("cannot read '", dir.file("train-images-idx3-ubyte"), "': it is a directory, expected a "
                       "regular file"));
  REQUIRE(::mkfifo(dir.file("test_batch.bin").c_str(), 0600) == 0);
  CHECK(message_of([&] { load_cifar10(dir.path.string(), Split::test); }) ==
        detail::concat("cannot read '", dir.file("test_batch.bin"), "': it is a FIFO (named pipe), expected a regular "
                       "file"));
}

#if !defined(__SANITIZE_ADDRESS__)  // AddressSanitizer reserves terabytes of address space
TEST_CASE("running out of host memory while loading is an OutOfMemoryError naming the file") {
  TempDir dir;
  // A sparse 2 GiB IDX file (no disk used), loaded under an address-space limit of 1 GiB more
  // than the process has mapped now.
  constexpr int64_t kSide = 1 << 15, kImages = 2;
  {
    std::vector<uint8_t> header = idx_file(0x803, {kImages, kSide, kSide}, {});
    write_bytes(dir.file("images"), header);
    REQUIRE(::truncate(dir.file("images").c_str(), static_cast<off_t>(header.size() + kImages * kSide * kSide)) == 0);
  }
  write_bytes(dir.file("labels"), idx_file(0x801, {kImages}, {1, 2}));
  long pages = 0;
  std::ifstream("/proc/self/statm") >> pages;
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_AS, &saved) == 0);
  rlimit limited = saved;
  limited.rlim_cur = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + (rlim_t{1} << 30);
  REQUIRE(::setrlimit(RLIMIT_AS, &limited) == 0);
  std::string message = "(no OutOfMemoryError)";
  try {
    load_idx(dir.file("images"), dir.file("labels"), 10, "x");
  } catch (const OutOfMemoryError& e) {
    message = e.what();
  } catch (const std::exception& e) {
    message = detail::concat("another error: ", e.what());
  }
  REQUIRE(::setrlimit(RLIMIT_AS, &saved) == 0);
  CHECK(message == detail::concat("out of host memory while loading '", dir.file("images"), "': could not hold ",
                                  16 + kImages * kSide * kSide, " bytes (free host memory, or load a subset of the data)"));
}
#endif
