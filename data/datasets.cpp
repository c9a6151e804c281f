// Dataset readers: CIFAR-10/100 binary records, IDX files (through zlib, which reads plain and
// gzip files alike), and the synthetic set.
#include "data/datasets.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/file_io.h"

namespace tg::data {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kCifarPixels = 3 * 32 * 32;

// gzip data (RFC 1952, one or more members) inflated whole. Bytes after the last member that do
// not start another member are an error, as is a member cut short.
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& compressed, const std::string& path) {
  TG_CHECK(compressed.size() <= UINT32_MAX, IoError, "cannot read '", path, "': ", compressed.size(),
           " bytes of gzip data, more than this reader takes (4 GiB); decompress the file first");
  z_stream z{};
  TG_CHECK(inflateInit2(&z, 16 + MAX_WBITS) == Z_OK, IoError, "cannot read '", path, "': zlib: ", z.msg ? z.msg : "init failed");
  std::vector<uint8_t> out;
  size_t used = 0;
  z.next_in = const_cast<Bytef*>(compressed.data());
  z.avail_in = static_cast<uInt>(compressed.size());
  auto fail = [&](const std::string& what, const char* hint = " (corrupt or truncated gzip data?)") {
    inflateEnd(&z);
    TG_THROW(IoError, "cannot read '", path, "': ", what, hint);
  };
  try {
    out.resize(std::max<size_t>(compressed.size() * 4, 1 << 16));
    while (true) {
      if (out.size() - used < (1 << 16)) out.resize(out.size() * 2);  // deflate expands at most 1032x
      const auto room = static_cast<uInt>(std::min<size_t>(out.size() - used, 1u << 30));
      z.next_out = out.data() + used;
      z.avail_out = room;
      const int rc = inflate(&z, Z_NO_FLUSH);
      used += room - z.avail_out;
      if (rc == Z_STREAM_END) {
        if (z.avail_in == 0) break;
        if (z.avail_in >= 2 && z.next_in[0] == 0x1f && z.next_in[1] == 0x8b) {  // another member
          inflateReset(&z);
          continue;
        }
        fail(detail::concat(z.avail_in, " bytes of trailing garbage after the end of the gzip data"), "");
      }
      if (rc == Z_BUF_ERROR && z.avail_in == 0) fail("unexpected end of file");
      if (rc != Z_OK && rc != Z_BUF_ERROR) fail(z.msg ? z.msg : "inflate failed");
    }
  } catch (const std::bad_alloc&) {
    inflateEnd(&z);
    throw_host_oom(path, out.size() * 2);
  }
  out.resize(used);
  inflateEnd(&z);
  return out;
}

// Reads a whole file, decompressing it when it starts with the gzip magic bytes.
std::vector<uint8_t> read_file(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) return gunzip(bytes, path);
  return bytes;
}

// `dir` itself if it holds `probe`, else `dir/nested` if that does; IoError otherwise.
std::string locate(const std::string& dir, const std::string& nested, const std::string& probe,
                   const std::string& dataset, const std::string& how_to_get) {
  for (const fs::path& candidate : {fs::path(dir), fs::path(dir) / nested})
    if (fs::exists(candidate / probe)) return candidate.string();  // read_file says if it is no file
  TG_THROW(IoError, dataset, " not found: '", dir, "' (nor '", (fs::path(dir) / nested).string(), "') has no ",
           probe, ". ", how_to_get);
}

const char* const kCifar10Help =
    "Expected the CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin), e.g. unpacked from "
    "cifar-10-binary.tar.gz of the CIFAR page (University of Toronto), or made from the JPEG copy with "
    "shared/tools/cifar10_jpeg_to_bin.py OUT_DIR.";
const char* const kCifar100Help =
    "Expected the CIFAR-100 binary version (train.bin, test.bin), e.g. unpacked from cifar-100-binary.tar.gz "
    "of the CIFAR page (University of Toronto), or made from the JPEG copy with "
    "shared/tools/cifar100_to_bin.py OUT_DIR.";
const char* const kFashionHelp =
    "Expected {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]; on Debian: apt-get install "
    "dataset-fashion-mnist (installs them in /usr/share/datasets/fashion-mnist).";

// Appends the records of one CIFAR file: `label_bytes` leading bytes, of which byte
// `label_offset` is the label, then 3072 pixel bytes.
void read_cifar_records(const std::string& path, int64_t label_bytes, int64_t label_offset, int64_t num_classes,
                        std::vector<uint8_t>& pixels, std::vector<int64_t>& labels) {
  const std::vector<uint8_t> bytes = read_file(path);
  const int64_t record = label_bytes + kCifarPixels;
  TG_CHECK(!bytes.empty() && static_cast<int64_t>(bytes.size()) % record == 0, IoError, "'", path, "' has ",
           bytes.size(), " bytes, not a whole number of ", record, "-byte records (truncated or not a CIFAR file)");
  const int64_t n = static_cast<int64_t>(bytes.size()) / record;
  try {
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* r = bytes.data() + i * record;
      const int64_t label = r[label_offset];
      TG_CHECK(label < num_classes, IoError, "'", path, "': record ", i, " has label ", label,
               ", out of range for ", num_classes, " classes");
      labels.push_back(label);
      pixels.insert(pixels.end(), r + label_bytes, r + record);
    }
  } catch (const std::bad_alloc&) {
    throw_host_oom(path, pixels.size() + bytes.size());
  }
}

ImageDataset make_dataset(std::string name, const uint8_t* pixels, std::vector<int64_t>& labels,
                          int64_t channels, int64_t height, int64_t width, int64_t num_classes) {
  const auto n = static_cast<int64_t>(labels.size());
  ImageDataset d;
  d.name = std::move(name);
  d.images = from_host(pixels, {n, channels, height, width}, DType::u8);
  d.labels = from_vector(labels, {n});
  d.num_classes = num_classes;
  return d;
}

uint32_t big_endian_u32(const std::vector<uint8_t>& bytes, size_t at) {
  return (uint32_t{bytes[at]} << 24) | (uint32_t{bytes[at + 1]} << 16) | (uint32_t{bytes[at + 2]} << 8) |
         uint32_t{bytes[at + 3]};
}

// Validates an IDX header (u8 data, `dims` dims) and returns the dims.
std::vector<int64_t> idx_dims(const std::vector<uint8_t>& bytes, const std::string& path, int dims) {
  const uint32_t expected_magic = 0x800u + static_cast<uint32_t>(dims);
  TG_CHECK(bytes.size() >= 4, IoError, "'", path, "' is too short for an IDX header (", bytes.size(), " bytes)");
  const uint32_t magic = big_endian_u32(bytes, 0);
  TG_CHECK(magic == expected_magic, IoError, "'", path, "': wrong magic number 0x", std::hex, magic,
           ", expected 0x", expected_magic, " (an IDX file of u8 data with ", std::dec, dims, " dims)");
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  TG_CHECK(bytes.size() >= header, IoError, "'", path, "' is truncated inside its IDX header");
  std::vector<int64_t> shape;
  for (int d = 0; d < dims; ++d) shape.push_back(big_endian_u32(bytes, 4 + 4 * static_cast<size_t>(d)));
  for (int d = 0; d < dims; ++d)
    TG_CHECK(shape[static_cast<size_t>(d)] > 0, IoError, "'", path, "': IDX dim ", d, " of shape ", Shape(shape).str(),
             " is 0, expected a positive size (an empty or corrupt file)");
  const auto data_bytes = static_cast<int64_t>(bytes.size() - header);
  const std::optional<int64_t> count = checked_product(shape);
  TG_CHECK(count && *count == data_bytes, IoError, "'", path, "' has ", data_bytes, " data bytes, expected ",
           count ? std::to_string(*count) : std::string("more than 2^63"), " for shape ", Shape(shape).str(),
           " (truncated or corrupt)");
  return shape;
}

}  // namespace

ImageDataset load_cifar10(const std::string& dir, Split split) {
  const std::string folder = locate(dir, "cifar-10-batches-bin", split == Split::train ? "data_batch_1.bin" : "test_batch.bin",
                                    "CIFAR-10", kCifar10Help);
  std::vector<uint8_t> pixels;
  std::vector<int64_t> labels;
  if (split == Split::train) {
    for (int b = 1; b <= 5; ++b)
      read_cifar_records((fs::path(folder) / ("data_batch_" + std::to_string(b) + ".bin")).string(), 1, 0, 10,
                         pixels, labels);
  } else {
    read_cifar_records((fs::path(folder) / "test_batch.bin").string(), 1, 0, 10, pixels, labels);
  }
  return make_dataset("cifar10", pixels.data(), labels, 3, 32, 32, 10);
}

ImageDataset load_cifar100(const std::string& dir, Split split, bool coarse_labels) {
  const std::string file = split == Split::train ? "train.bin" : "test.bin";
  const std::string folder = locate(dir, "cifar-100-binary", file, "CIFAR-100", kCifar100Help);
  std::vector<uint8_t> pixels;
  std::vector<int64_t> labels;
  const int64_t classes = coarse_labels ? 20 : 100;
  read_cifar_records((fs::path(folder) / file).string(), 2, coarse_labels ? 0 : 1, classes, pixels, labels);
  return make_dataset(coarse_labels ? "cifar100-coarse" : "cifar100", pixels.data(), labels, 3, 32, 32, classes);
}

ImageDataset load_idx(const std::string& images_path, const std::string& labels_path, int64_t num_classes,
                      const std::string& name) {
  std::vector<uint8_t> image_bytes = read_file(images_path);
  const std::vector<int64_t> image_shape = idx_dims(image_bytes, images_path, 3);
  const std::vector<uint8_t> label_bytes = read_file(labels_path);
  const std::vector<int64_t> label_shape = idx_dims(label_bytes, labels_path, 1);
  TG_CHECK(image_shape[0] == label_shape[0], IoError, "'", images_path, "' holds ", image_shape[0], " images but '",
           labels_path, "' holds ", label_shape[0], " labels");
  try {
    std::vector<int64_t> labels;
    for (int64_t i = 0; i < label_shape[0]; ++i) {
      const int64_t label = label_bytes[8 + static_cast<size_t>(i)];
      TG_CHECK(label < num_classes, IoError, "'", labels_path, "': label ", label, " at index ", i,
               " is out of range for ", num_classes, " classes");
      labels.push_back(label);
    }
    return make_dataset(name, image_bytes.data() + 16, labels, 1, image_shape[1], image_shape[2], num_classes);
  } catch (const std::bad_alloc&) {
    throw_host_oom(images_path, image_bytes.size());
  }
}

ImageDataset load_fashion_mnist(const std::string& dir, Split split) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  auto find = [&](const std::string& stem) {
    for (const std::string& candidate : {stem, stem + ".gz"})
      if (fs::exists(fs::path(dir) / candidate)) return (fs::path(dir) / candidate).string();
    TG_THROW(IoError, "Fashion-MNIST not found: '", dir, "' has no ", stem, " (nor ", stem, ".gz). ", kFashionHelp);
  };
  const std::string images = find(prefix + "-images-idx3-ubyte");
  const std::string labels = find(prefix + "-labels-idx1-ubyte");
  return load_idx(images, labels, 10, "fashion-mnist");
}

ImageDataset make_synthetic(int64_t size, int64_t channels, int64_t image_size, int64_t num_classes, uint64_t seed) {
  TG_CHECK(size > 0 && channels > 0 && image_size > 0 && num_classes > 1, ValueError,
           "synthetic dataset: expected positive sizes and at least 2 classes, got size ", size, ", channels ",
           channels, ", image size ", image_size, ", classes ", num_classes);
  Generator generator(seed);
  const int64_t pixels = channels * image_size * image_size;
  const std::vector<float> prototypes = rand({num_classes, pixels}, DType::f32, Device::cpu(), generator, 0, 255).to_vector<float>();
  const std::vector<float> noise = randn({size, pixels}, DType::f32, Device::cpu(), generator, 0, 40).to_vector<float>();
  std::vector<uint8_t> images(static_cast<size_t>(size * pixels));
  std::vector<int64_t> labels(static_cast<size_t>(size));
  for (int64_t i = 0; i < size; ++i) {
    const int64_t label = i % num_classes;
    labels[static_cast<size_t>(i)] = label;
    for (int64_t p = 0; p < pixels; ++p) {
      const float v = prototypes[static_cast<size_t>(label * pixels + p)] + noise[static_cast<size_t>(i * pixels + p)];
      images[static_cast<size_t>(i * pixels + p)] = static_cast<uint8_t>(std::clamp(v, 0.0f, 255.0f));
    }
  }
  return make_dataset("synthetic", images.data(), labels, channels, image_size, image_size, num_classes);
}

ImageDataset take_first(const ImageDataset& dataset, int64_t n) {
  ImageDataset subset = dataset;
  const int64_t keep = std::clamp<int64_t>(n, 0, dataset.size());
  subset.images = dataset.images.raw_narrow(0, 0, keep);
  subset.labels = dataset.labels.raw_narrow(0, 0, keep);
  return subset;
}

}  // namespace tg::data
