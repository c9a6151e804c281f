// train_vit data parallel on the CPU, as built, under apps/launch (docs/distributed.md): 2 ranks
// x batch 16 train like 1 rank x batch 32 step for step; rank 0 alone prints, writes metrics and
// checkpoints; a 2-rank run resumes bit for bit and refuses another world size; a rank that
// fails or is killed ends the job within a bounded time naming it, with the launcher and, without
// one, at the survivors' --dist-timeout; usage errors of data-parallel runs.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>

#include "tests/apps/train_vit_dist_fixture.h"

using namespace tg;

namespace {

using Clock = std::chrono::steady_clock;

// The fixture's tiny run (8 steps of 32 per epoch) stopped after 10 steps, with `batch` per rank.
std::vector<std::string> run_args(int batch) {
  std::vector<std::string> args = test::with(test::tiny_run_args(), {"--max-steps", "10"});
  test::set_flag(args, "--batch-size", std::to_string(batch));
  return args;
}

// A job whose rank R runs train_vit with `args`, its metrics in DIR/m<R>.jsonl and its checkpoints
// in DIR/ckpt<R> (so that what each rank writes can be told apart).
test::ProcessResult launch_with_rank_files(int port, const std::vector<std::string>& args, const test::ScratchDir& dir) {
  const std::string script = "exec \"$@\" --metrics-out " + (dir / "m") + "$RANK.jsonl --save " + (dir / "ckpt") + "$RANK";
  return test::launch_job(2, port, "sh -c '" + script + "' sh '" + test::train_vit_exe() + "'" + test::shell_args(args), dir);
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

}  // namespace

// Tolerance: the ranks' gradients are the one-rank gradient summed in another order (each rank's
// GEMMs sum over half the batch, then the halves are averaged), which moves each f32 gradient
// element by a few units in the last place (~1e-7 relative); Adam carries that into the weights.
// Measured on the development machine over these 10 steps: losses and test losses within
// 2.4e-7 (one ulp at 2.2), gradient norms within 1e-6 relative. 1e-5 leaves 40 ulps for other
// CPUs, and is far below what a real difference makes: ranks that averaged nothing, or read the
// same shard, change the losses by about 1e-2.
TEST_CASE("2 ranks x batch 16 give the losses, gradient norms and evaluations of 1 rank x batch 32") {
  test::ScratchDir dir("train_vit_dist_equal");
  const test::ProcessResult one = test::run_executable(
      test::train_vit_exe(), test::shell_args(test::with(run_args(32), {"--metrics-out", dir / "one.jsonl"})), dir);
  REQUIRE(one.exit_code == 0);
  const test::ProcessResult two = launch_with_rank_files(29621, run_args(16), dir);
  INFO(two.out, two.err);
  REQUIRE(two.exit_code == 0);
  CHECK(two.err.empty());

  const std::vector<nlohmann::json> a = test::read_jsonl(dir / "one.jsonl"), b = test::read_jsonl(dir / "m0.jsonl");
  REQUIRE(a.size() == b.size());
  REQUIRE(test::train_losses(dir / "m0.jsonl").size() == 10);
  for (size_t i = 1; i < a.size(); ++i) {  // after the config record
    CAPTURE(i);
    REQUIRE(a[i]["type"] == b[i]["type"]);
    CHECK(a[i]["step"] == b[i]["step"]);
    CHECK(std::abs(a[i]["loss"].get<double>() - b[i]["loss"].get<double>()) <= 1e-5);
    if (a[i]["type"] == "eval") CHECK(a[i]["test_acc"] == b[i]["test_acc"]);
    if (a[i]["type"] == "train")  // clipping (--clip-grad 1) saw the global norm on every rank
      CHECK(std::abs(a[i]["grad_norm"].get<double>() / b[i]["grad_norm"].get<double>() - 1) <= 1e-5);
  }
  CHECK(b[0]["options"]["world_size"] == 2);
  CHECK(b[0]["options"]["batch_size"] == 16);

  // Rank 0 alone writes (rank 1's --save folder was only checked for writability) and prints.
  CHECK(std::filesystem::exists(dir / "ckpt0/latest"));
  CHECK(!std::filesystem::exists(dir / "m1.jsonl"));
  CHECK(!std::filesystem::exists(dir / "ckpt1/latest"));
  const nn::SafetensorsFile state = nn::load_safetensors(train::checkpoint_files(dir / "ckpt0").train_state);
  CHECK(nlohmann::json::parse(state.metadata.at("config"))["world_size"] == 2);
  size_t configurations = 0;
  for (size_t at = two.out.find("train_vit: configuration"); at != std::string::npos;
       at = two.out.find("train_vit: configuration", at + 1))
    ++configurations;
  CHECK(configurations == 1);
  CHECK(two.out.find("  batch size        16 per rank, global 32 over 2 ranks\n") != std::string::npos);
  CHECK(two.out.find("  data parallel     rank 0 of 2, store at 127.0.0.1:29621, timeout 300 s\n") != std::string::npos);
  CHECK(std::regex_search(two.out, std::regex("\n         rank 0: peak allocated [0-9.]+ MiB, peak reserved [0-9.]+ MiB\n"
                                              "         rank 1: peak allocated [0-9.]+ MiB, peak reserved [0-9.]+ MiB\n")));
}

// With WTA-CRS: each rank's sampling stream and gradient-norm proxy are its own, and the
// checkpoint keeps every rank's proxy (rank<r>.backward_strategy.*).
TEST_CASE("a 2-rank WTA-CRS run resumes bit for bit; resuming on another world size is refused with its message") {
  test::ScratchDir dir("train_vit_dist_resume");
  const std::vector<std::string> args = test::with(run_args(16), {"--backward", "wta-crs", "--ratio", "0.5"});
  REQUIRE(test::launch_train_vit(2, 29622, test::with(args, {"--metrics-out", dir / "straight.jsonl"}), dir).exit_code == 0);
  const std::string ckpt = dir / "ckpt", metrics = dir / "split.jsonl";
  std::vector<std::string> first = test::with(args, {"--save", ckpt, "--metrics-out", metrics});
  test::set_flag(first, "--max-steps", "6");
  REQUIRE(test::launch_train_vit(2, 29622, first, dir).exit_code == 0);
  const test::ProcessResult resumed =
      test::launch_train_vit(2, 29622, test::with(args, {"--resume", ckpt, "--save", ckpt, "--metrics-out", metrics}), dir);
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK(resumed.out.find("resumed from " + ckpt + " at epoch 1, step 6\n") != std::string::npos);
  CHECK(test::train_losses(metrics) == test::train_losses(dir / "straight.jsonl"));  // bitwise
  const nn::SafetensorsFile state = nn::load_safetensors(train::checkpoint_files(ckpt).train_state);
  CHECK(state.tensors.count("rank1.backward_strategy.blocks.0.fc1.proxy") == 1);
  CHECK(state.tensors.count("backward_strategy.blocks.0.fc1.proxy") == 1);

  const std::string why = "the checkpoint was written by a run of 2 rank(s) and this run has ";
  const std::string rest = " (WORLD_SIZE); the global batch (--batch-size x world size) and the samples each rank "
                           "reads at each step depend on it, so resume with WORLD_SIZE=2\n";
  const test::ProcessResult alone =
      test::run_executable(test::train_vit_exe(), test::shell_args(test::with(args, {"--resume", ckpt})), dir);
  CHECK(alone.exit_code == 1);
  CHECK(alone.err == "train_vit: error: --resume " + ckpt + ": " + why + "1" + rest);
  const test::ProcessResult three = test::launch_train_vit(3, 29622, test::with(args, {"--resume", ckpt}), dir);
  CHECK(three.exit_code == 1);
  // Every rank refuses; the launcher may stop the others before they print.
  CHECK(std::regex_search(three.err, std::regex("train_vit: rank [0-2] of 3: error: --resume ")));
  CHECK(three.err.find(": error: --resume " + ckpt + ": " + why + "3" + rest) != std::string::npos);
}

TEST_CASE("a rank that fails at the start ends the job at once, and the launcher names it") {
  test::ScratchDir dir("train_vit_dist_fail");
  const Clock::time_point start = Clock::now();
  const std::string script = "if [ \"$RANK\" = 1 ]; then exec \"$@\" --data-dir " + (dir / "missing") + "; fi; exec \"$@\"";
  const test::ProcessResult r = test::launch_job(
      2, 29623, "sh -c '" + script + "' sh '" + test::train_vit_exe() + "'" + test::shell_args(run_args(16)), dir);
  CHECK(seconds_since(start) < 30);  // rank 0 waits at its first collective until the launcher stops it
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("train_vit: rank 1 of 2: error: ") != std::string::npos);
  CHECK(r.err.find(dir / "missing") != std::string::npos);
  CHECK(r.err.find("launch: rank 1 exited with code 1; stopping the other 1 rank(s)\n") != std::string::npos);
  CHECK(r.err.ends_with("launch: job failed: rank 1 exited with code 1\n"));
}

TEST_CASE("a rank killed while training ends the job within the launcher's grace period") {
  test::ScratchDir dir("train_vit_dist_killed");
  std::vector<std::string> args = test::with(test::tiny_run_args(), {});
  test::set_flag(args, "--batch-size", "16");
  test::set_flag(args, "--epochs", "50");  // about 10 s: rank 1 is killed long before the end
  const Clock::time_point start = Clock::now();
  // $$ is the shell that becomes rank 1's train_vit.
  const std::string script = "if [ \"$RANK\" = 1 ]; then (sleep 2; kill -9 $$) & fi; exec \"$@\"";
  const test::ProcessResult r =
      test::launch_job(2, 29624, "sh -c '" + script + "' sh '" + test::train_vit_exe() + "'" + test::shell_args(args), dir);
  CHECK(seconds_since(start) < 30);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("launch: rank 1 was killed by signal 9 (Killed); stopping the other 1 rank(s)\n") != std::string::npos);
  CHECK(r.out.find("summary:") == std::string::npos);
}

TEST_CASE("without a launcher, the rank left alone fails at --dist-timeout naming the rank that died") {
  test::ScratchDir dir("train_vit_dist_timeout");
  std::vector<std::string> args = test::with(test::tiny_run_args(), {"--dist-timeout", "2"});
  test::set_flag(args, "--batch-size", "16");
  test::set_flag(args, "--epochs", "50");
  const std::string exe = "'" + test::train_vit_exe() + "'" + test::shell_args(args);
  const std::string metrics = dir / "m.jsonl";
  // torchrun's variables set by hand; rank 1 is killed once rank 0 has logged three steps.
  std::ofstream(dir / "job.sh")
      << "export WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29625\n"
      << "RANK=0 LOCAL_RANK=0 " << exe << " --metrics-out " << metrics << " > " << dir / "out0" << " 2> " << dir / "err0"
      << " & p0=$!\n"
      << "RANK=1 LOCAL_RANK=1 " << exe << " > /dev/null 2>&1 & p1=$!\n"
      << "i=0; n=0; while [ \"$n\" -lt 3 ] && [ $i -lt 600 ]; do\n"
      << "  sleep 0.05; i=$((i + 1)); n=$(grep -s -c '\"type\":\"train\"' " << metrics << "); n=${n:-0}\ndone\n"
      << "kill -9 $p1; wait $p0; echo $? > " << dir / "code0" << "\n";
  const Clock::time_point start = Clock::now();
  REQUIRE(std::system(("sh '" + (dir / "job.sh") + "'").c_str()) == 0);
  CHECK(seconds_since(start) < 40);
  CHECK(test::read_text(dir / "code0") == "1\n");
  const std::string err = test::read_text(dir / "err0");
  INFO(err);
  CHECK(std::regex_match(err, std::regex("train_vit: rank 0 of 2: error: CPU communicator rank 0 of 2: [a-z_]+ \\([^)]*\\) of "
                                         "collective [0-9]+: TcpStore: rank 0 waited 2000 ms for "
                                         "'tapegrad/collective/[0-9]+' from all 2 ranks; missing rank\\(s\\): 1\n")));
}

namespace {
const std::map<std::string, std::string> kTwoRanks = {
    {"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29626"}};
}  // namespace

TEST_CASE("data-parallel usage errors stop every rank before any work with exit code 2") {
  test::ScratchDir dir("train_vit_dist_usage");
  const test::EnvGuard env(kTwoRanks);
  const auto error_of = [&](const std::string& args) {
    const test::ProcessResult r = test::run_executable(test::train_vit_exe(), "--device cpu " + args, dir);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    return r.err;
  };
  CHECK(error_of("--optimizer-in-backward --clip-grad 0") ==
        "train_vit: rank 1 of 2: error: --optimizer-in-backward updates each parameter from this rank's gradient "
        "inside backward, before the all-reduce has averaged it over the 2 ranks (WORLD_SIZE=2); drop "
        "--optimizer-in-backward, or run one process\n");
  CHECK(error_of("--dist-timeout 0") ==
        "train_vit: rank 1 of 2: error: --dist-timeout must be a number of seconds in (0, 1000000], got 0\n");
  const test::ProcessResult gpu = test::run_executable(test::train_vit_exe(), "--device cuda:1", dir);
  CHECK(gpu.exit_code == 2);
  CHECK(gpu.err ==
        "train_vit: rank 1 of 2: error: --device cuda:1 names one GPU, but each rank of a data-parallel job "
        "(WORLD_SIZE=2) uses its own, cuda:LOCAL_RANK; give --device cuda or auto\n");
}

TEST_CASE("train_vit refuses a malformed launcher environment with the variable's message") {
  test::ScratchDir dir("train_vit_dist_bad_env");
  auto vars = kTwoRanks;
  vars["MASTER_PORT"] = "http";
  const test::EnvGuard env(vars);
  const test::ProcessResult r = test::run_executable(test::train_vit_exe(), "--device cpu --max-steps 1", dir);
  CHECK(r.exit_code == 2);
  CHECK(r.err == "train_vit: error: launcher environment: MASTER_PORT must be an integer in [1, 65535], got 'http'\n");
}
