// The built apps/launch end to end: a failing rank's job exits 1 with the launcher's messages,
// a successful job 0, bad flags 2 before anything starts.
#include <doctest/doctest.h>

#include "tests/support/process.h"
#include "tests/support/test_support.h"

#if !defined(LAUNCH_EXE) || !defined(LAUNCH_FROM_TEST)
#error "LAUNCH_EXE and LAUNCH_FROM_TEST (where the built launch is) must be defined"
#endif

using namespace tg;

namespace {
test::ProcessResult run_launch(const std::string& args, const test::ScratchDir& dir) {
  return test::run_executable(test::built_executable(LAUNCH_EXE, LAUNCH_FROM_TEST), args, dir);
}
}  // namespace

TEST_CASE("launch exits 1 naming the failing rank, 0 when every rank succeeds") {
  test::ScratchDir dir("launch_cli");
  // Rank 1 fails once rank 0 has printed its line ($0 is the flag file rank 0 makes).
  test::ProcessResult r = run_launch(
      "--nproc-per-node 2 --master-port 29512 -- sh -c 'echo $RANK/$WORLD_SIZE/$MASTER_PORT; if [ $RANK = 0 ]; then "
      "touch \"$0\"; sleep 30; fi; while [ ! -e \"$0\" ]; do sleep 0.01; done; exit 7' '" + (dir / "up") + "'",
      dir);
  CHECK(r.exit_code == 1);
  CHECK((r.out == "0/2/29512\n1/2/29512\n" || r.out == "1/2/29512\n0/2/29512\n"));
  CHECK(r.err ==
        "launch: rank 1 exited with code 7; stopping the other 1 rank(s)\n"
        "launch: job failed: rank 1 exited with code 7\n");
  r = run_launch("--nproc-per-node 3 -- true", dir);
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
}

TEST_CASE("launch refuses bad flags with exit code 2") {
  test::ScratchDir dir("launch_cli_bad");
  test::ProcessResult r = run_launch("-- true", dir);
  CHECK(r.exit_code == 2);
  CHECK(r.err == "--nproc-per-node is required\nRun with --help for more information.\n");
  r = run_launch("--nproc-per-node 2 --grace-seconds -1 -- true", dir);
  CHECK(r.exit_code == 2);
  CHECK(r.err == "launch: --grace-seconds must be a finite number >= 0, got -1\n");
  r = run_launch("--nproc-per-node 0 -- true", dir);
  CHECK(r.exit_code == 2);
  CHECK(r.err == "launch: --nproc-per-node must be at least 1, got 0\n");
}
