// safetensors: exact format bytes, round trips of every dtype, malformed and hostile files
// (issue 14: deep JSON, overflowing sizes, overlapping tensors), state dicts.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "nn/module.h"
#include "nn/safetensors.h"
#include "tests/support/op_checks.h"

using namespace tg;
using namespace tg::nn;

namespace {
std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / detail::concat("tapegrad-", ::getpid(), "-", name)).string();
}
std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
// The IoError message of loading `path`.
std::string load_error(const std::string& path) {
  try {
    load_safetensors(path);
  } catch (const IoError& e) {
    return e.what();
  }
  return "(no IoError)";
}
std::string with_header(const std::string& json, const std::string& data) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  return bytes + json + data;
}
}  // namespace

TEST_CASE("the file layout is the safetensors format byte for byte") {
  const std::string path = temp_path("layout.safetensors");
  save_safetensors(path, {{"b", from_vector<float>({1.0f}, {1})}, {"a", from_vector<int32_t>({7, 8}, {2})}}, {{"format", "pt"}});
  const std::vector<char> bytes = read_all(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[static_cast<size_t>(i)])) << (8 * i);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  CHECK(n % 8 == 0);
  CHECK(header.rfind(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 0) == 0);
  CHECK(bytes.size() == 8 + n + 12);
  const int32_t* a = reinterpret_cast<const int32_t*>(bytes.data() + 8 + n);
  CHECK(a[0] == 7);
  CHECK(a[1] == 8);
  std::remove(path.c_str());
}

TEST_CASE("every dtype round-trips, with metadata") {
  const std::string path = temp_path("roundtrip.safetensors");
  const Tensor f = test::random_tensor({3, 5}, 1);
  std::map<std::string, Tensor> tensors = {
      {"f32", f}, {"f64", f.to(DType::f64)}, {"bf16", f.to(DType::bf16)},
      {"i64", arange(0, 6, 1, DType::i64).raw_reshape({2, 3})}, {"u8", full({4}, 200, DType::u8)}, {"scalar", full({}, 2.5)}};
  save_safetensors(path, tensors, {{"epoch", "3"}});
  const SafetensorsFile file = load_safetensors(path);
  CHECK(file.metadata.at("epoch") == "3");
  REQUIRE(file.tensors.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    CAPTURE(name);
    const Tensor& got = file.tensors.at(name);
    CHECK(got.shape() == t.shape());
    CHECK(got.dtype() == t.dtype());
    CHECK(test::host_values(got) == test::host_values(t));
  }
  std::remove(path.c_str());
}

TEST_CASE("malformed files fail naming the file and the problem") {
  const std::string path = temp_path("bad.safetensors");
  auto message = [&] { return load_error(path); };
  write_all(path, "abc");
  CHECK(message() == detail::concat("'", path, "' is too short for a safetensors file (3 bytes)"));
  write_all(path, with_header("{not json", ""));
  CHECK(message().find(detail::concat("'", path, "': the header is not valid JSON")) == 0);
  write_all(path, with_header(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", std::string(12, '\0')));
  CHECK(message() == detail::concat("'", path, "': tensor 'w' of shape [2, 2] and dtype f32 needs 16 bytes, its offsets span 12"));
  write_all(path, with_header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')));
  CHECK(message() == detail::concat("'", path, "': tensor 'w' has data offsets outside the 8-byte data section"));
  write_all(path, with_header(R"({"w":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}})", std::string(2, '\0')));
  CHECK(message() == detail::concat("'", path, "': tensor 'w' has dtype F16, which tapegrad does not support (F32, F64, BF16, I32, I64, U8)"));
  std::remove(path.c_str());
}

namespace {
// A header, the size of the data section after it, and the message after "'<path>': ".
struct Refused {
  std::string header;
  size_t data_bytes;
  std::string message;
};
void check_refused(const std::string& name, const std::vector<Refused>& cases) {
  const std::string path = temp_path(name);
  for (const Refused& c : cases) {
    CAPTURE(c.message);
    write_all(path, with_header(c.header, std::string(c.data_bytes, '\0')));
    CHECK(load_error(path) == "'" + path + "': " + c.message);
  }
  std::remove(path.c_str());
}
}  // namespace

TEST_CASE("hostile headers: deep JSON, sizes that overflow, non-integer and negative shapes, bad metadata") {
  const std::string tensor = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  check_refused("hostile.safetensors", {
      // 200,000 nested arrays in __metadata__ used to overflow the stack when printed back.
      {R"({"__metadata__":{"k":)" + std::string(200000, '[') + std::string(200000, ']') + "}," + tensor + "}", 8,
       "the header nests deeper than 64 JSON levels (corrupt or hostile file)"},
      // [2^62 + 4] x 4 bytes wraps to 16 in 64 bits.
      {R"({"w":{"dtype":"F32","shape":[4611686018427387908],"data_offsets":[0,16]}})", 16,
       "tensor 'w' of shape [4611686018427387908] and dtype f32 needs more than 2^63 bytes (corrupt header)"},
      {R"({"w":{"dtype":"F32","shape":[2.9],"data_offsets":[0,8]}})", 8,
       "tensor 'w' has shape entry 2.9, expected a non-negative integer below 2^63"},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8,
       "tensor 'w' has shape entry -2, expected a non-negative integer below 2^63"},
      {R"({"__metadata__":["format","pt"],)" + tensor + "}", 8, "__metadata__ is array, expected an object of strings"},
      {R"({"__metadata__":{"epoch":3},)" + tensor + "}", 8, "__metadata__ entry 'epoch' is number, expected a string"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})", 8,
       "tensor 'w' has data_offsets entry 18446744073709551615, expected a non-negative integer below 2^63"},
  });
}

TEST_CASE("the tensors must tile the data section: overlaps, holes and trailing bytes are refused") {
  check_refused("tiling.safetensors", {
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, "tensors 'a' (bytes 0..8) and 'b' (bytes 4..12) overlap"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       12, "bytes 4..8 of the data section belong to no tensor (expected the tensors to tile it)"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8,
       "the data section has 8 bytes but its tensors end at byte 4 (expected the tensors to tile it)"},
  });
}

TEST_CASE("a folder named like a safetensors file is reported as a folder") {
  const std::string path = temp_path("folder.safetensors");
  std::filesystem::create_directories(path);
  CHECK_THROWS_WITH_AS(load_safetensors(path),
                       detail::concat("load_safetensors: cannot read '", path, "': it is a directory, expected a regular "
                                      "file").c_str(),
                       IoError);
  std::filesystem::remove_all(path);
}

namespace {
struct Tiny : Module {
  Tensor weight, bias;
  Tiny() {
    weight = register_parameter("weight", test::random_tensor({3, 2}, 5));
    bias = register_parameter("bias", zeros({3}));
  }
};
struct Outer : Module {
  std::shared_ptr<Tiny> fc;
  Tensor token;
  Outer() {
    token = register_parameter("cls_token", zeros({1, 1, 2}));
    fc = register_module("fc", std::make_shared<Tiny>());
  }
};
}  // namespace

TEST_CASE("module names, state dicts and their mismatch errors") {
  Outer model;
  const auto named = model.named_parameters();
  REQUIRE(named.size() == 3);
  CHECK(named[0].first == "cls_token");
  CHECK(named[1].first == "fc.weight");
  CHECK(named[2].first == "fc.bias");
  CHECK(model.num_parameters() == 2 + 6 + 3);
  const std::string path = temp_path("model.safetensors");
  save_safetensors(path, model.state_dict());
  Outer other;
  other.load_state_dict(load_safetensors(path).tensors);
  CHECK(other.fc->weight.to_vector<float>() == model.fc->weight.to_vector<float>());
  StateDict state = model.state_dict();
  state["fc.weight"] = zeros({2, 3});
  CHECK_THROWS_WITH_AS(other.load_state_dict(state),
                       "load_state_dict: key 'fc.weight' has shape [2, 3] in the state dict, but the model expects [3, 2]",
                       ShapeError);
  state = model.state_dict();
  state["fc.bias"] = zeros({3}, DType::f64);
  CHECK_THROWS_WITH_AS(other.load_state_dict(state),
                       "load_state_dict: key 'fc.bias' has dtype f64 in the state dict, but the model expects f32 (shape [3])",
                       TypeError);
  state = model.state_dict();
  state.erase("cls_token");
  CHECK_THROWS_WITH_AS(other.load_state_dict(state), "load_state_dict: missing key 'cls_token' (expected shape [1, 1, 2])",
                       ValueError);
  state = model.state_dict();
  state["head.weight"] = zeros({4});
  CHECK_THROWS_WITH_AS(other.load_state_dict(state),
                       "load_state_dict: unexpected key 'head.weight' (shape [4]) is not a parameter of the model", ValueError);
  std::remove(path.c_str());
}
