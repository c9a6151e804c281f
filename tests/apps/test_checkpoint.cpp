// train_vit checkpoints as one atomic unit (issue 14): a save killed at every one of its steps
// leaves a checkpoint that resumes bit for bit; two files of different checkpoints are refused
// naming both; missing or extra optimizer state and out-of-range metadata are refused naming
// the file.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <functional>

#include "apps/train_vit/checkpoint.h"
#include "core/error.h"
#include "nn/safetensors.h"
#include "tests/apps/train_vit_fixture.h"
#include "tests/support/test_support.h"

using namespace tg;
using test::run;
using test::with;
namespace fs = std::filesystem;

namespace {

// The tiny run (8 steps per epoch, 2 epochs) with a smaller test set: evaluations are cheap.
std::vector<std::string> small_run() {
  std::vector<std::string> args = test::tiny_run_args();
  test::set_flag(args, "--test-subset", "32");
  return args;
}

std::string error_of(const std::function<void()>& f) { return test::thrown_message(f); }

void check_same_tensors(const std::string& a, const std::string& b) {
  const nn::SafetensorsFile x = nn::load_safetensors(a), y = nn::load_safetensors(b);
  REQUIRE(x.tensors.size() == y.tensors.size());
  for (const auto& [name, tensor] : x.tensors) {
    CAPTURE(name);
    REQUIRE(y.tensors.count(name) == 1);
    const Tensor& other = y.tensors.at(name);
    REQUIRE(other.nbytes() == tensor.nbytes());
    CHECK(std::memcmp(other.raw_data(), tensor.raw_data(), tensor.nbytes()) == 0);
  }
}

// Rewrites train_state.safetensors of the checkpoint in `dir` through `edit`.
void edit_state(const std::string& dir,
                const std::function<void(std::map<std::string, Tensor>&, std::map<std::string, std::string>&)>& edit) {
  const std::string path = train::checkpoint_files(dir).train_state;
  nn::SafetensorsFile file = nn::load_safetensors(path);
  edit(file.tensors, file.metadata);
  nn::save_safetensors(path, file.tensors, file.metadata);
}

struct Killed {};  // what the fault hook throws: the writer "dies" there

}  // namespace

TEST_CASE("a save killed at any rename or fsync resumes bit for bit from the last complete checkpoint") {
  test::ScratchDir dir("ckpt_kill");
  const std::vector<std::string> base = small_run();
  run(with(base, {"--max-steps", "12", "--save", dir / "straight"}));
  const train::CheckpointFiles reference = train::checkpoint_files(dir / "straight");
  run(with(base, {"--max-steps", "8", "--save", dir / "at8"}));

  // The steps of one save, in order (a resumed run at its end saves once).
  std::vector<std::string> points;
  fs::copy(dir / "at8", dir / "probe", fs::copy_options::recursive);
  train::testing::set_checkpoint_fault_hook([&](const std::string& point) { points.push_back(point); });
  run(with(base, {"--max-steps", "8", "--resume", dir / "probe", "--save", dir / "probe"}));
  train::testing::set_checkpoint_fault_hook({});
  const auto published = std::find(points.begin(), points.end(), "rename latest");
  REQUIRE(points.size() >= 10);
  REQUIRE(published != points.end());

  for (size_t k = 0; k < points.size(); ++k) {
    CAPTURE(points[k]);
    const std::string trial = dir / ("trial" + std::to_string(k));
    fs::copy(dir / "at8", trial, fs::copy_options::recursive);
    size_t seen = 0;
    train::testing::set_checkpoint_fault_hook([&](const std::string&) {
      if (seen++ == k) throw Killed{};
    });
    CHECK_THROWS_AS(run(with(base, {"--max-steps", "12", "--resume", trial, "--save", trial})), Killed);
    train::testing::set_checkpoint_fault_hook({});
    // Until `latest` is renamed the step-8 checkpoint stands; from then on the step-12 one.
    const bool after_publication = k >= static_cast<size_t>(published - points.begin());
    CHECK(nn::load_safetensors(train::checkpoint_files(trial).train_state).metadata.at("step") ==
          (after_publication ? "12" : "8"));
    const train::RunSummary resumed = run(with(base, {"--max-steps", "12", "--resume", trial, "--save", trial}));
    CHECK(resumed.steps == 12);
    check_same_tensors(train::checkpoint_files(trial).model, reference.model);
    check_same_tensors(train::checkpoint_files(trial).train_state, reference.train_state);
    // The next complete save cleared what the killed one left: `latest` and one version folder.
    CHECK(std::distance(fs::directory_iterator(trial), fs::directory_iterator()) == 2);
  }
}

TEST_CASE("--resume refuses a model and a train state of different checkpoints, naming both files") {
  test::ScratchDir dir("ckpt_mixed");
  const std::vector<std::string> base = small_run();
  run(with(base, {"--max-steps", "4", "--save", dir / "a"}));
  run(with(base, {"--max-steps", "6", "--save", dir / "b"}));
  const train::CheckpointFiles a = train::checkpoint_files(dir / "a"), b = train::checkpoint_files(dir / "b");
  fs::copy_file(b.model, a.model, fs::copy_options::overwrite_existing);
  const std::string id_a = nn::load_safetensors(a.train_state).metadata.at("checkpoint_id");
  const std::string id_b = nn::load_safetensors(b.model).metadata.at("checkpoint_id");
  CHECK(id_a.rfind("step-000000000004-", 0) == 0);
  CHECK(id_b.rfind("step-000000000006-", 0) == 0);
  CHECK(error_of([&] { run(with(base, {"--max-steps", "8", "--resume", dir / "a"})); }) ==
        "'" + a.model + "' (checkpoint " + id_b + ") and '" + a.train_state + "' (checkpoint " + id_a +
            ") are not one checkpoint (a torn save or files mixed by hand); resume from a complete checkpoint");
}

TEST_CASE("--resume is strict about optimizer state and range-checks the position") {
  test::ScratchDir dir("ckpt_strict");
  const std::vector<std::string> base = small_run();
  run(with(base, {"--max-steps", "8", "--save", dir / "ckpt"}));
  const std::string state = train::checkpoint_files(dir / "ckpt").train_state;
  fs::copy(dir / "ckpt", dir / "pristine", fs::copy_options::recursive);
  const std::vector<std::string> resume = with(base, {"--max-steps", "10", "--resume", dir / "ckpt"});
  auto restore = [&] {
    fs::remove_all(dir / "ckpt");
    fs::copy(dir / "pristine", dir / "ckpt", fs::copy_options::recursive);
  };
  // A missing optimizer moment.
  edit_state(dir / "ckpt", [](auto& tensors, auto&) { tensors.erase("blocks.0.attn.qkv.weight.exp_avg"); });
  CHECK(error_of([&] { run(resume); }) == "'" + state +
                                               "': optimizer load_state_dict: missing key "
                                               "'blocks.0.attn.qkv.weight.exp_avg' (expected shape [576, 192])");
  restore();
  // An extra one.
  edit_state(dir / "ckpt", [](auto& tensors, auto&) { tensors["blocks.7.mlp.fc1.weight.exp_avg"] = zeros({2}); });
  CHECK(error_of([&] { run(resume); }).find("'" + state + "': optimizer load_state_dict: unexpected key "
                                            "'blocks.7.mlp.fc1.weight.exp_avg' (shape [2])") == 0);
  restore();
  // Positions outside the run: epoch 99, epoch -3, batch 99, a step that does not match them.
  // And a configuration nested 100,000 levels deep (printed back, it would overflow the stack).
  const std::pair<std::string, std::string> bad[] = {{"epoch", "99"}, {"epoch", "-3"}, {"batch", "99"}, {"step", "5"},
                                                     {"config", std::string(100000, '[') + std::string(100000, ']')}};
  const char* const expected[] = {"metadata epoch 99 is out of range [0, 2] (--epochs 2)",
                                  "metadata epoch -3 is out of range [0, 2] (--epochs 2)",
                                  "metadata batch 99 is out of range [0, 7] (8 steps per epoch, epoch 1)",
                                  "metadata step 5 is out of range [8, 8] (epoch 1 x 8 steps + batch 0)",
                                  "metadata entry 'config' nests deeper than 64 JSON levels (corrupt or hostile file)"};
  for (size_t i = 0; i < std::size(bad); ++i) {
    CAPTURE(bad[i].first);
    edit_state(dir / "ckpt", [&](auto&, auto& metadata) { metadata[bad[i].first] = bad[i].second; });
    const std::string message = error_of([&] { run(resume); });
    CHECK(message == "'" + state + "': " + expected[i]);
    restore();
  }
  // The pristine checkpoint still resumes.
  CHECK(run(resume).steps == 10);
}
