// safetensors reading and writing with nlohmann-json for the header. Reading trusts nothing in
// the file: every size is overflow-checked, the JSON depth is bounded and the tensors must tile
// the data section exactly, as the reference reader requires.
#include "nn/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "nn/bounded_json.h"

namespace tg::nn {

namespace {

const char* safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
  }
  return "?";
}

DType dtype_from_safetensors(const std::string& name, const std::string& path, const std::string& key) {
  for (DType d : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64, DType::u8})
    if (name == safetensors_dtype(d)) return d;
  TG_THROW(IoError, "'", path, "': tensor '", key, "' has dtype ", name,
           ", which tapegrad does not support (F32, F64, BF16, I32, I64, U8)");
}

}  // namespace

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> host;
  size_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    TG_CHECK(name != "__metadata__", ValueError, "save_safetensors: '__metadata__' is reserved as a tensor name");
    const Tensor h = tensor.detach().to(Device::cpu()).raw_contiguous();
    header[name] = {{"dtype", safetensors_dtype(h.dtype())}, {"shape", h.shape().dims()},
                    {"data_offsets", {offset, offset + h.nbytes()}}};
    offset += h.nbytes();
    host.push_back(h);
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // the reference writer pads the header to 8 bytes
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  TG_CHECK(out.good(), IoError, "save_safetensors: cannot open '", path, "' for writing");
  const uint64_t length = json.size();
  unsigned char length_bytes[8];
  for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<unsigned char>(length >> (8 * i));
  out.write(reinterpret_cast<const char*>(length_bytes), 8);
  out.write(json.data(), static_cast<std::streamsize>(json.size()));
  for (const Tensor& h : host) out.write(static_cast<const char*>(h.raw_data()), static_cast<std::streamsize>(h.nbytes()));
  TG_CHECK(out.good(), IoError, "save_safetensors: writing '", path, "' failed");
}

namespace {

// The reference implementation's limit on the JSON header (safetensors' MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// A non-negative JSON integer of `entry` (a shape dim or an offset), else IoError naming the key.
int64_t header_integer(const nlohmann::json& value, const std::string& path, const std::string& key,
                       const char* field) {
  TG_CHECK(value.is_number_integer() && (value.is_number_unsigned() || value.get<int64_t>() >= 0) &&
               (!value.is_number_unsigned() || value.get<uint64_t>() <= uint64_t{INT64_MAX}),
           IoError, "'", path, "': tensor '", key, "' has ", field, " entry ", value.dump(),
           ", expected a non-negative integer below 2^63");
  return value.get<int64_t>();
}

struct ByteRange {
  int64_t begin, end;
  std::string key;
};

// One tensor's header entry -> its dtype, shape and byte range (all checked, no overflow).
void parse_entry(const nlohmann::json& entry, const std::string& path, const std::string& key, DType& dtype,
                 Shape& shape, ByteRange& range) {
  TG_CHECK(entry.is_object(), IoError, "'", path, "': entry '", key, "' is ", entry.type_name(),
           ", expected an object with dtype, shape and data_offsets");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    TG_CHECK(entry.contains(field), IoError, "'", path, "': tensor '", key, "' has no '", field, "'");
  const nlohmann::json& name = entry["dtype"];
  TG_CHECK(name.is_string(), IoError, "'", path, "': tensor '", key, "' has dtype ", name.dump(), ", expected a string");
  dtype = dtype_from_safetensors(name.get<std::string>(), path, key);
  const nlohmann::json& dims = entry["shape"];
  TG_CHECK(dims.is_array(), IoError, "'", path, "': tensor '", key, "' has shape ", dims.dump(), ", expected an array");
  std::vector<int64_t> values;
  for (const nlohmann::json& d : dims) values.push_back(header_integer(d, path, key, "shape"));
  shape = Shape(values);
  const nlohmann::json& offsets = entry["data_offsets"];
  TG_CHECK(offsets.is_array() && offsets.size() == 2, IoError, "'", path, "': tensor '", key, "' has data_offsets ",
           offsets.dump(), ", expected [begin, end]");
  range = {header_integer(offsets[0], path, key, "data_offsets"), header_integer(offsets[1], path, key, "data_offsets"),
           key};
  const std::optional<int64_t> numel = checked_product(values);
  const std::optional<int64_t> expected = numel ? checked_mul(*numel, static_cast<int64_t>(dtype_size(dtype))) : std::nullopt;
  TG_CHECK(expected, IoError, "'", path, "': tensor '", key, "' of shape ", shape.str(), " and dtype ",
           dtype_name(dtype), " needs more than 2^63 bytes (corrupt header)");
  TG_CHECK(range.begin <= range.end && range.end - range.begin == *expected, IoError, "'", path, "': tensor '", key,
           "' of shape ", shape.str(), " and dtype ", dtype_name(dtype), " needs ", *expected,
           " bytes, its offsets span ", range.end - range.begin);
}

// The reference reader's rule: the tensors tile the data section exactly, without overlaps,
// holes or trailing bytes.
void check_tiling(std::vector<ByteRange> ranges, int64_t data_size, const std::string& path) {
  std::sort(ranges.begin(), ranges.end(), [](const ByteRange& a, const ByteRange& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  int64_t at = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const ByteRange& r = ranges[i];
    TG_CHECK(r.end <= data_size, IoError, "'", path, "': tensor '", r.key,
             "' has data offsets outside the ", data_size, "-byte data section");
    TG_CHECK(r.begin >= at, IoError, "'", path, "': tensors '", ranges[i - 1].key, "' (bytes ", ranges[i - 1].begin,
             "..", ranges[i - 1].end, ") and '", r.key, "' (bytes ", r.begin, "..", r.end, ") overlap");
    TG_CHECK(r.begin == at, IoError, "'", path, "': bytes ", at, "..", r.begin,
             " of the data section belong to no tensor (expected the tensors to tile it)");
    at = r.end;
  }
  TG_CHECK(at == data_size, IoError, "'", path, "': the data section has ", data_size, " bytes but its tensors end at byte ",
           at, " (expected the tensors to tile it)");
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file_bytes(path);
  } catch (const IoError& e) {
    TG_THROW(IoError, "load_safetensors: ", e.what());
  }
  TG_CHECK(bytes.size() >= 8, IoError, "'", path, "' is too short for a safetensors file (", bytes.size(), " bytes)");
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= static_cast<uint64_t>(bytes[static_cast<size_t>(i)]) << (8 * i);
  TG_CHECK(length <= bytes.size() - 8, IoError, "'", path, "': header length ", length, " exceeds the file size ",
           bytes.size());
  TG_CHECK(length <= kMaxHeaderBytes, IoError, "'", path, "': header length ", length, " exceeds the format's limit of ",
           kMaxHeaderBytes, " bytes");
  const nlohmann::json header =
      parse_bounded_json(std::string_view(reinterpret_cast<const char*>(bytes.data()) + 8, length),
                         detail::concat("'", path, "': the header"));
  TG_CHECK(header.is_object(), IoError, "'", path, "': the header is not a JSON object");
  const size_t data_start = 8 + length;
  const auto data_size = static_cast<int64_t>(bytes.size() - data_start);
  SafetensorsFile file;
  std::vector<ByteRange> ranges;
  std::vector<std::pair<DType, Shape>> layouts;
  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") {
      TG_CHECK(entry.is_object(), IoError, "'", path, "': __metadata__ is ", entry.type_name(),
               ", expected an object of strings");
      for (const auto& [k, v] : entry.items()) {
        TG_CHECK(v.is_string(), IoError, "'", path, "': __metadata__ entry '", k, "' is ", v.type_name(),
                 ", expected a string");
        file.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    DType dtype{};
    Shape shape;
    ByteRange range{};
    parse_entry(entry, path, key, dtype, shape, range);
    ranges.push_back(range);
    layouts.emplace_back(dtype, shape);
  }
  check_tiling(ranges, data_size, path);
  try {
    for (size_t i = 0; i < ranges.size(); ++i)
      file.tensors[ranges[i].key] =
          from_host(bytes.data() + data_start + ranges[i].begin, layouts[i].second, layouts[i].first);
  } catch (const std::bad_alloc&) {
    throw_host_oom(path, bytes.size());
  }
  return file;
}

}  // namespace tg::nn
