// The launcher on small shell jobs: the environment each rank sees, a failing rank stopping the
// others (their children included) within a bounded time, SIGKILL after the grace period, a
// rank killed by a signal, a signal to the launcher forwarded to every rank, and bad configs.
#include <doctest/doctest.h>

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "dist/launcher.h"
#include "tests/support/process.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::dist;
using namespace std::chrono_literals;

namespace {

struct Result {
  int code;
  std::string log;
  double seconds;
};

// Runs `script` under sh as `n` ranks; the script's $1 is `dir`.
Result run(int n, const std::string& script, const std::string& dir, std::chrono::milliseconds grace = 5000ms) {
  LaunchConfig config;
  config.nproc_per_node = n;
  config.command = {"sh", "-c", script, "sh", dir};
  config.master_port = 29511;
  config.grace = grace;
  std::ostringstream log;
  const auto start = std::chrono::steady_clock::now();
  const int code = launch(config, log);
  return {code, log.str(), std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
}

}  // namespace

TEST_CASE("every rank gets torchrun's environment and a job of successful ranks returns 0") {
  test::ScratchDir dir("launch_env");
  const char* nvls = std::getenv("NCCL_NVLS_ENABLE");
  const std::string saved = nvls ? nvls : "";
  ::unsetenv("NCCL_NVLS_ENABLE");
  const Result r = run(3,
                       "echo \"$RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT "
                       "$NCCL_NVLS_ENABLE\" > \"$1/$RANK\"",
                       dir.path().string());
  if (nvls) ::setenv("NCCL_NVLS_ENABLE", saved.c_str(), 1);
  CHECK(r.code == 0);
  CHECK(r.log == "");
  for (int rank = 0; rank < 3; ++rank) {
    const std::string k = std::to_string(rank);
    CHECK(test::read_text(dir / k) == k + " " + k + " 3 3 127.0.0.1 29511 0\n");
  }
}

TEST_CASE("a failing rank stops the others and their children at once, and the job fails naming it") {
  test::ScratchDir dir("launch_failing_rank");
  // Rank 1 fails as soon as the others are up; the others leave a background child that would
  // write a file 0.3 s later if only the rank's shell were stopped.
  const Result r = run(3,
                       "if [ \"$RANK\" = 1 ]; then while [ ! -e \"$1/up0\" ] || [ ! -e \"$1/up2\" ]; do sleep 0.01; "
                       "done; exit 3; fi; (sleep 0.3; touch \"$1/survivor$RANK\") & touch \"$1/up$RANK\"; sleep 30",
                       dir.path().string());
  CHECK(r.code == 1);
  CHECK(r.log ==
        "launch: rank 1 exited with code 3; stopping the other 2 rank(s)\n"
        "launch: job failed: rank 1 exited with code 3\n");
  CHECK(r.seconds < 3.0);
  std::this_thread::sleep_for(500ms);
  CHECK_FALSE(std::filesystem::exists(dir / "survivor0"));
  CHECK_FALSE(std::filesystem::exists(dir / "survivor2"));
}

TEST_CASE("a rank that ignores SIGTERM is killed after the grace period") {
  test::ScratchDir dir("launch_grace");
  const Result r = run(2,
                       "if [ \"$RANK\" = 1 ]; then while [ ! -e \"$1/ready\" ]; do sleep 0.01; done; exit 5; fi; "
                       "trap '' TERM; touch \"$1/ready\"; sleep 30",
                       dir.path().string(), 200ms);
  CHECK(r.code == 1);
  CHECK(r.log ==
        "launch: rank 1 exited with code 5; stopping the other 1 rank(s)\n"
        "launch: 1 rank(s) still running 200 ms after SIGTERM; sending SIGKILL\n"
        "launch: job failed: rank 1 exited with code 5\n");
  CHECK(r.seconds >= 0.2);
  CHECK(r.seconds < 3.0);
}

TEST_CASE("a rank killed by a signal is reported with the signal") {
  test::ScratchDir dir("launch_signal_kill");
  const Result r = run(2, "if [ \"$RANK\" = 0 ]; then kill -KILL $$; fi; sleep 30", dir.path().string());
  CHECK(r.code == 1);
  CHECK(r.log ==
        "launch: rank 0 was killed by signal 9 (Killed); stopping the other 1 rank(s)\n"
        "launch: job failed: rank 0 was killed by signal 9 (Killed)\n");
  CHECK(r.seconds < 3.0);
}

TEST_CASE("SIGTERM to the launcher is forwarded to every rank and the job exits with 128 + 15") {
  test::ScratchDir dir("launch_forward");
  // Rank 0 signals its parent, the launcher (this test process, which blocks SIGTERM while
  // launch() runs), once rank 1 is up.
  const Result r = run(2,
                       "if [ \"$RANK\" = 0 ]; then while [ ! -e \"$1/up1\" ]; do sleep 0.01; done; kill -TERM $PPID; "
                       "else touch \"$1/up1\"; fi; sleep 30",
                       dir.path().string());
  CHECK(r.code == 128 + 15);
  CHECK(r.log ==
        "launch: got SIGTERM; forwarding it to 2 rank(s)\n"
        "launch: job failed: interrupted by SIGTERM\n");
  CHECK(r.seconds < 3.0);
}

TEST_CASE("the ranks' exit status is seen even when the caller ignores SIGCHLD") {
  test::ScratchDir dir("launch_sigchld");
  struct sigaction ignore {}, previous {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGCHLD, &ignore, &previous);
  const Result r = run(1, "exit 4", dir.path().string());
  struct sigaction after {};
  ::sigaction(SIGCHLD, &previous, &after);
  CHECK((after.sa_handler == SIG_IGN));  // launch() restored the caller's disposition
  CHECK(r.code == 1);
  CHECK(r.log ==
        "launch: rank 0 exited with code 4; stopping the other 0 rank(s)\n"
        "launch: job failed: rank 0 exited with code 4\n");
}

TEST_CASE("a program that cannot be started fails its rank with code 127") {
  LaunchConfig config;
  config.command = {"/nonexistent/tapegrad-program"};
  std::ostringstream log;
  CHECK(launch(config, log) == 1);
  CHECK(log.str() ==
        "launch: rank 0 exited with code 127; stopping the other 0 rank(s)\n"
        "launch: job failed: rank 0 exited with code 127\n");
}

TEST_CASE("bad launcher configurations are refused before anything starts") {
  std::ostringstream log;
  LaunchConfig config;
  config.command = {"true"};
  config.nproc_per_node = 0;
  CHECK(test::thrown_message<ValueError>([&] { launch(config, log); }) ==
        "launch: --nproc-per-node must be at least 1, got 0");
  config.nproc_per_node = 2;
  config.master_port = 0;
  CHECK(test::thrown_message<ValueError>([&] { launch(config, log); }) ==
        "launch: --master-port must be in [1, 65535], got 0");
  config.master_port = 29500;
  config.command.clear();
  CHECK(test::thrown_message<ValueError>([&] { launch(config, log); }) ==
        "launch: no command to run (launch [options] -- PROGRAM ARGS...)");
  CHECK(log.str() == "");
}
