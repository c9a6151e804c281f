// The launcher environment: single-process defaults, a full torchrun set, and the exact message
// for each missing or malformed variable.
#include <doctest/doctest.h>

#include <map>

#include "dist/data_parallel.h"
#include "dist/env.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::dist;

namespace {

LaunchEnv parse(const std::map<std::string, std::string>& vars) {
  return parse_launch_env([&](const std::string& name) -> std::optional<std::string> {
    const auto found = vars.find(name);
    if (found == vars.end()) return std::nullopt;
    return found->second;
  });
}

std::string parse_error(const std::map<std::string, std::string>& vars) {
  return test::thrown_message<ValueError>([&] { parse(vars); });
}

const std::map<std::string, std::string> kTorchrun = {
    {"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29500"}};

std::map<std::string, std::string> with(std::string name, std::string value) {
  auto vars = kTorchrun;
  vars[name] = value;
  return vars;
}

std::map<std::string, std::string> without(const std::string& name) {
  auto vars = kTorchrun;
  vars.erase(name);
  return vars;
}

}  // namespace

TEST_CASE("no launcher variables is a single-process run") {
  const LaunchEnv env = parse({});
  CHECK(env.rank == 0);
  CHECK(env.world_size == 1);
  CHECK(env.local_rank == 0);
  CHECK(env.master_addr.empty());
  CHECK(env.master_port == 0);
  CHECK_FALSE(env.distributed());
}

TEST_CASE("a torchrun environment is read exactly") {
  const LaunchEnv env = parse(kTorchrun);
  CHECK(env.rank == 3);
  CHECK(env.world_size == 4);
  CHECK(env.local_rank == 1);
  CHECK(env.master_addr == "node0");
  CHECK(env.master_port == 29500);
  CHECK(env.distributed());
}

TEST_CASE("WORLD_SIZE=1 needs no rendezvous variables but checks the ones given") {
  const LaunchEnv env = parse({{"WORLD_SIZE", "1"}, {"RANK", "0"}, {"LOCAL_RANK", "0"}});
  CHECK(env.world_size == 1);
  CHECK_FALSE(env.distributed());
  CHECK(parse_error({{"WORLD_SIZE", "1"}, {"RANK", "1"}}) ==
        "launcher environment: RANK must be an integer in [0, WORLD_SIZE=1), got '1'");
}

TEST_CASE("each missing variable of a distributed set is named") {
  const std::string tail = " is not (a launcher sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT together)";
  for (const char* name : {"RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) {
    CAPTURE(name);
    CHECK(parse_error(without(name)) == std::string("launcher environment: WORLD_SIZE=4 is set but ") + name + tail);
  }
  CHECK(parse_error({{"RANK", "0"}}) ==
        "launcher environment: RANK is set but WORLD_SIZE is not (a launcher sets RANK, WORLD_SIZE, LOCAL_RANK, "
        "MASTER_ADDR and MASTER_PORT together)");
  CHECK(parse_error({{"LOCAL_RANK", "0"}}).starts_with("launcher environment: LOCAL_RANK is set but WORLD_SIZE is not"));
}

TEST_CASE("malformed and out-of-range values are refused with what was found") {
  CHECK(parse_error(with("WORLD_SIZE", "two")) ==
        "launcher environment: WORLD_SIZE must be an integer in [1, 2147483647], got 'two'");
  CHECK(parse_error(with("WORLD_SIZE", "0")) ==
        "launcher environment: WORLD_SIZE must be an integer in [1, 2147483647], got '0'");
  CHECK(parse_error(with("WORLD_SIZE", "")) ==
        "launcher environment: WORLD_SIZE must be an integer in [1, 2147483647], got ''");
  CHECK(parse_error(with("RANK", "4")) == "launcher environment: RANK must be an integer in [0, WORLD_SIZE=4), got '4'");
  CHECK(parse_error(with("RANK", "-1")) == "launcher environment: RANK must be an integer in [0, WORLD_SIZE=4), got '-1'");
  CHECK(parse_error(with("RANK", "1 ")) == "launcher environment: RANK must be an integer in [0, WORLD_SIZE=4), got '1 '");
  CHECK(parse_error(with("RANK", "+1")) == "launcher environment: RANK must be an integer in [0, WORLD_SIZE=4), got '+1'");
  CHECK(parse_error(with("LOCAL_RANK", "9")) ==
        "launcher environment: LOCAL_RANK must be an integer in [0, WORLD_SIZE=4), got '9'");
  CHECK(parse_error(with("MASTER_PORT", "70000")) ==
        "launcher environment: MASTER_PORT must be an integer in [1, 65535], got '70000'");
  CHECK(parse_error(with("MASTER_PORT", "0x10")) ==
        "launcher environment: MASTER_PORT must be an integer in [1, 65535], got '0x10'");
  CHECK(parse_error(with("MASTER_PORT", "99999999999")) ==
        "launcher environment: MASTER_PORT must be an integer in [1, 65535], got '99999999999'");
  CHECK(parse_error(with("MASTER_ADDR", "")) ==
        "launcher environment: MASTER_ADDR must be a host name or address, got ''");
}

TEST_CASE("a build's NCCL availability decides whether a distributed environment on CUDA is refused") {
  CHECK(cuda_data_parallel_available() == (TG_EXPECT_NCCL != 0));  // what CMake found
  CHECK_NOTHROW(require_cuda_data_parallel(parse({})));
  const std::string message =
      test::thrown_message<NotImplementedError>([] { require_cuda_data_parallel(parse(kTorchrun)); });
  if (cuda_data_parallel_available()) {
    CHECK(message == "(no error)");
  } else {
    CHECK(message ==
          "data parallelism on CUDA is unavailable: the launcher environment asks for WORLD_SIZE=4 ranks, but this "
          "build of tapegrad has no NCCL; configure with the CUDA backend and -DTAPEGRAD_NCCL=ON (nccl.h and libnccl "
          "under /usr/local/cuda, or -DTAPEGRAD_NCCL_ROOT=DIR), or run the ranks on the CPU (--device cpu)");
  }
}
