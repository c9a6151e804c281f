// The cross-rank parameter check: FNV-1a 64 against its published test values, the records'
// format, and three ranks in threads agreeing, or failing on every rank with the parameter and
// the rank that differ.
#include <doctest/doctest.h>

#include <cstdio>
#include <thread>

#include "core/error.h"
#include "dist/consistency.h"
#include "tests/dist/store_fixture.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::dist;
using namespace std::chrono_literals;

namespace {

StoreOptions options(int rank, int port) { return test::store_options(rank, 3, port); }

NamedTensors parameters(float tweak) {
  return {{"w", from_vector<float>({1, 2, 3, 4}, {2, 2})}, {"b", from_vector<float>({0.5f, tweak}, {2})}};
}

// The record of parameter "b" (without its newline) when its second element is `tweak`.
std::string record_of_b(float tweak) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(tensor_checksum(parameters(tweak)[1].second)));
  return std::string("b f32 [2] ") + hex;
}

// check_parameters_match on three ranks (threads); rank r holds `per_rank[r]`. Each rank's
// DistributedError message, "" when it passed.
std::vector<std::string> check_all(const std::vector<NamedTensors>& per_rank) {
  std::vector<std::string> errors(3);
  TcpStore rank0(options(0, 0));
  const auto check = [&](TcpStore& store) {
    const auto r = static_cast<size_t>(store.rank());
    errors[r] = test::thrown_message<DistributedError>([&] { check_parameters_match(store, "start", per_rank[r]); }, "");
  };
  std::vector<std::thread> others;
  for (int r = 1; r < 3; ++r)
    others.emplace_back([&, r] {
      TcpStore store(options(r, rank0.port()));
      check(store);
    });
  check(rank0);
  for (auto& t : others) t.join();
  return errors;
}

}  // namespace

TEST_CASE("tensor_checksum is FNV-1a 64 of the bytes in row-major order") {
  // Published FNV-1a 64 values: "" -> cbf29ce484222325, "a" -> af63dc4c8601ec8c, "foobar" -> 85944171f73967e8.
  CHECK(tensor_checksum(empty({0}, DType::u8)) == 0xcbf29ce484222325ull);
  CHECK(tensor_checksum(from_vector<uint8_t>({'a'}, {1})) == 0xaf63dc4c8601ec8cull);
  const Tensor foobar = from_vector<uint8_t>({'f', 'o', 'o', 'b', 'a', 'r'}, {2, 3});
  CHECK(tensor_checksum(foobar) == 0x85944171f73967e8ull);
  // A transposed view hashes its logical order: "fboaor".
  CHECK(tensor_checksum(foobar.raw_transpose(0, 1)) == tensor_checksum(from_vector<uint8_t>({'f', 'b', 'o', 'a', 'o', 'r'}, {3, 2})));
  CHECK(parameter_records({{"x", from_vector<uint8_t>({'a'}, {1})}}) == "x u8 [1] af63dc4c8601ec8c\n");
}

TEST_CASE("ranks holding the same parameters pass the check") {
  CHECK(check_all({parameters(7), parameters(7), parameters(7)}) == std::vector<std::string>{"", "", ""});
}

TEST_CASE("a rank holding other parameters fails the check on every rank, naming it and the parameter") {
  const std::vector<std::string> errors = check_all({parameters(7), parameters(7), parameters(8)});
  const std::string rank0_b = record_of_b(7), rank2_b = record_of_b(8);
  REQUIRE(rank0_b != rank2_b);
  for (const auto& error : errors)
    CHECK(error == "parameter check 'start': parameter 1 differs between rank 0 (" + rank0_b + ") and rank 2 (" +
                       rank2_b + "); every rank must hold rank 0's parameters");
  NamedTensors fewer = parameters(7);
  fewer.pop_back();
  for (const auto& error : check_all({parameters(7), fewer, parameters(7)}))
    CHECK(error == "parameter check 'start': rank 1 has 1 parameters, rank 0 has 2");
}
