// Parsing of the launcher environment (env.h): strict decimal integers, ranges, and the
// variables a distributed run cannot do without.
#include "dist/env.h"

#include <charconv>
#include <cstdlib>
#include <limits>

#include "core/error.h"

namespace tg::dist {

namespace {

constexpr const char* kAllVariables = "RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT";

// The value of `name` as an integer in [lo, hi]; `range` says the range in the message.
int parse_int(const std::string& name, const std::string& text, int lo, int hi, const std::string& range) {
  int value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  TG_CHECK(!text.empty() && ec == std::errc() && ptr == end && value >= lo && value <= hi, ValueError,
           "launcher environment: ", name, " must be an integer in ", range, ", got '", text, "'");
  return value;
}

std::string require(const EnvLookup& lookup, const std::string& name, int world_size) {
  const auto value = lookup(name);
  TG_CHECK(value.has_value(), ValueError, "launcher environment: WORLD_SIZE=", world_size, " is set but ", name,
           " is not (a launcher sets ", kAllVariables, " together)");
  return *value;
}

}  // namespace

LaunchEnv parse_launch_env(const EnvLookup& lookup) {
  constexpr int kMaxInt = std::numeric_limits<int>::max();
  LaunchEnv env;
  const auto world = lookup("WORLD_SIZE");
  if (!world) {
    for (const char* name : {"RANK", "LOCAL_RANK"})
      TG_CHECK(!lookup(name), ValueError, "launcher environment: ", name, " is set but WORLD_SIZE is not (a launcher sets ",
               kAllVariables, " together)");
    return env;
  }
  env.world_size = parse_int("WORLD_SIZE", *world, 1, kMaxInt, "[1, 2147483647]");
  if (!env.distributed()) {
    // WORLD_SIZE=1: a one-rank job; the other variables are optional but must be valid when set.
    if (const auto rank = lookup("RANK")) env.rank = parse_int("RANK", *rank, 0, 0, "[0, WORLD_SIZE=1)");
    if (const auto local = lookup("LOCAL_RANK")) env.local_rank = parse_int("LOCAL_RANK", *local, 0, kMaxInt, "[0, 2147483647]");
    return env;
  }
  const std::string world_range = "[0, WORLD_SIZE=" + std::to_string(env.world_size) + ")";
  env.rank = parse_int("RANK", require(lookup, "RANK", env.world_size), 0, env.world_size - 1, world_range);
  env.local_rank = parse_int("LOCAL_RANK", require(lookup, "LOCAL_RANK", env.world_size), 0, env.world_size - 1, world_range);
  env.master_addr = require(lookup, "MASTER_ADDR", env.world_size);
  TG_CHECK(!env.master_addr.empty(), ValueError, "launcher environment: MASTER_ADDR must be a host name or address, got ''");
  env.master_port = parse_int("MASTER_PORT", require(lookup, "MASTER_PORT", env.world_size), 1, 65535, "[1, 65535]");
  return env;
}

LaunchEnv launch_env_from_process() {
  return parse_launch_env([](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  });
}

}  // namespace tg::dist
