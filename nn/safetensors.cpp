// safetensors reading and writing with nlohmann-json for the header.
#include "nn/safetensors.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

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

SafetensorsFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TG_CHECK(in.good(), IoError, "load_safetensors: cannot open '", path, "'");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TG_CHECK(bytes.size() >= 8, IoError, "'", path, "' is too short for a safetensors file (", bytes.size(), " bytes)");
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[static_cast<size_t>(i)])) << (8 * i);
  TG_CHECK(length <= bytes.size() - 8, IoError, "'", path, "': header length ", length, " exceeds the file size ",
           bytes.size());
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(length));
  } catch (const nlohmann::json::exception& e) {
    TG_THROW(IoError, "'", path, "': the header is not valid JSON (", e.what(), ")");
  }
  TG_CHECK(header.is_object(), IoError, "'", path, "': the header is not a JSON object");
  const size_t data_start = 8 + length, data_size = bytes.size() - data_start;
  SafetensorsFile file;
  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") {
      for (const auto& [k, v] : entry.items())
        file.metadata[k] = v.is_string() ? v.get<std::string>() : v.dump();
      continue;
    }
    try {
      const DType dtype = dtype_from_safetensors(entry.at("dtype").get<std::string>(), path, key);
      const Shape shape(entry.at("shape").get<std::vector<int64_t>>());
      const auto offsets = entry.at("data_offsets").get<std::vector<uint64_t>>();
      TG_CHECK(offsets.size() == 2 && offsets[0] <= offsets[1] && offsets[1] <= data_size, IoError, "'", path,
               "': tensor '", key, "' has data offsets outside the ", data_size, "-byte data section");
      const size_t expected = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
      TG_CHECK(offsets[1] - offsets[0] == expected, IoError, "'", path, "': tensor '", key, "' of shape ",
               shape.str(), " and dtype ", dtype_name(dtype), " needs ", expected, " bytes, its offsets span ",
               offsets[1] - offsets[0]);
      file.tensors[key] = from_host(bytes.data() + data_start + offsets[0], shape, dtype);
    } catch (const nlohmann::json::exception& e) {
      TG_THROW(IoError, "'", path, "': malformed entry for tensor '", key, "' (", e.what(), ")");
    }
  }
  return file;
}

}  // namespace tg::nn
