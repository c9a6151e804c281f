// The memory planner (apps/vit/planner.h) and train_vit's planning flags (apps/train_vit/planning.h):
// --memory-budget parsing with its exact messages, the planner's choice around two plans' peaks,
// an impossible budget's message with the smallest achievable peak, --no-sampling,
// --find-max-batch, --plan-only's output and --memory-report's per-block view.
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

#include "apps/train_vit/planning.h"
#include "apps/vit/planner.h"
#include "core/memory_stats.h"
#include "tests/apps/planning_fixture.h"
#include "tests/apps/train_vit_fixture.h"

using namespace tg;

namespace {

vit::StepSetup small_setup() { return test::small_planning_setup(); }

vit::MemoryPlan uniform(const vit::BlockPlan& block) { return {std::vector<vit::BlockPlan>(3, block)}; }

// The planner's options with the FLOP step-time model and ratio 0.3.
vit::PlannerOptions options(int64_t budget, bool sampling) {
  vit::PlannerOptions o;
  o.budget_bytes = budget;
  o.allow_sampling = sampling;
  o.sampling_ratio = 0.3;
  return o;
}

int64_t peak(const vit::MemoryPlan& plan) { return vit::predict_memory(small_setup(), plan).peak_bytes; }

std::string error_of(const std::function<void()>& f) { return test::thrown_message<ValueError>(f, "(no ValueError)"); }

std::string parse_error(const std::vector<std::string>& args) { return test::planning_parse_error(args); }

const std::string kForms = "bytes with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB; e.g. 3GB, 2.5GiB, 800MB)";

}  // namespace

TEST_CASE("--memory-budget takes bytes with decimal or binary units, or a fraction of a capacity") {
  CHECK(train::parse_memory_budget("3GB", std::nullopt) == 3000000000);
  CHECK(train::parse_memory_budget("2.5GiB", std::nullopt) == 2684354560);
  CHECK(train::parse_memory_budget("800MB", std::nullopt) == 800000000);
  CHECK(train::parse_memory_budget("512kib", std::nullopt) == 524288);
  CHECK(train::parse_memory_budget("1e9B", std::nullopt) == 1000000000);
  CHECK(train::parse_memory_budget("0.5", int64_t{8000000000}) == 4000000000);
  CHECK(train::parse_memory_budget("1", int64_t{8000000000}) == 8000000000);
  CHECK(train::parse_byte_size("16GB", "--memory-capacity") == 16000000000);
}

TEST_CASE("a malformed --memory-budget names the flag, the forms and what was found") {
  CHECK(error_of([] { train::parse_memory_budget("3XB", std::nullopt); }) ==
        "--memory-budget: expected " + kForms + " or a fraction of the device's memory in (0, 1] (e.g. 0.5), got '3XB'");
  CHECK(error_of([] { train::parse_memory_budget("GB", std::nullopt); }) ==
        "--memory-budget: expected " + kForms + " or a fraction of the device's memory in (0, 1] (e.g. 0.5), got 'GB'");
  CHECK(error_of([] { train::parse_memory_budget("-3GB", std::nullopt); }) ==
        "--memory-budget: expected " + kForms + " or a fraction of the device's memory in (0, 1] (e.g. 0.5), got '-3GB'");
  CHECK(error_of([] { train::parse_memory_budget("1.5", int64_t{1000}); }) ==
        "--memory-budget: a number without a unit is a fraction of the device's memory and must be in (0, 1], got "
        "'1.5' (for bytes give a unit, e.g. 1.5B)");
  CHECK(error_of([] { train::parse_memory_budget("0.5", std::nullopt); }) ==
        "--memory-budget 0.5 is a fraction of the device's memory, but the CPU has no capacity of its own: give "
        "--memory-capacity BYTES (e.g. 16GB) to take the fraction of, or the budget in bytes (e.g. 2GB)");
  CHECK(error_of([] { train::parse_memory_budget("0.0001B", std::nullopt); }) ==
        "--memory-budget: expected a positive size of at least 1 byte, got '0.0001B'");
  CHECK(error_of([] { train::parse_byte_size("0.5", "--memory-capacity"); }) ==
        "--memory-capacity: expected " + kForms + ", got '0.5'");
}

TEST_CASE("train_vit checks the planning flags before any work") {
  CHECK(parse_error({"--memory-budget", "lots"}) ==
        "--memory-budget: expected " + kForms + " or a fraction of the device's memory in (0, 1] (e.g. 0.5), got 'lots'");
  CHECK(parse_error({"--memory-budget", "0.5"}).rfind("--memory-budget 0.5 is a fraction of the device's memory", 0) == 0);
  CHECK(test::parse_args({"--dataset", "synthetic", "--device", "cpu", "--memory-budget", "0.25", "--memory-capacity",
                          "8GB"})
            .memory_budget_bytes == 2000000000);
  CHECK(parse_error({"--no-sampling"}) == "--no-sampling needs --memory-budget (e.g. --memory-budget 3GB)");
  CHECK(parse_error({"--find-max-batch"}) == "--find-max-batch needs --memory-budget (e.g. --memory-budget 3GB)");
  CHECK(parse_error({"--memory-capacity", "8GB"}) ==
        "--memory-capacity has no effect without --memory-budget (it is what a fractional budget is of)");
  CHECK(parse_error({"--memory-budget", "1GB", "--recompute-norms"}) ==
        "--memory-budget chooses the per-block plan itself, so --recompute-norms cannot be given with it (drop "
        "--recompute-norms, or drop --memory-budget to give the plan by hand)");
  CHECK(parse_error({"--memory-budget", "1GB", "--attention", "explicit"}) ==
        "--memory-budget needs --attention fused: the memory model does not cover the explicit attention");
  // The planner's sampling ratio.
  CHECK(test::parse_args({"--dataset", "synthetic", "--device", "cpu", "--memory-budget", "1GB", "--ratio", "0.2"}).ratio ==
        0.2);
}

TEST_CASE("a budget the exact plan meets keeps every block exact, at relative step time 1") {
  const vit::PlanChoice c = vit::choose_plan(small_setup(), options(peak(uniform({})), true));
  CHECK(c.plan == uniform({}));
  CHECK(c.relative_time == 1);
}

TEST_CASE("a budget between two plans' peaks gets the cheaper plan that fits") {
  vit::BlockPlan norms;
  norms.recompute_norms = true;
  vit::MemoryPlan first_norms = uniform({});
  first_norms.blocks[0] = norms;  // the cheapest step up from exact
  REQUIRE(peak(first_norms) < peak(uniform({})));
  // Just below the exact plan's peak: norm recomputation in block 0 alone is enough and costs least.
  const vit::PlanChoice c = vit::choose_plan(small_setup(), options(peak(uniform({})) - 1, true));
  CHECK(vit::describe(c.plan) == vit::describe(first_norms));
  CHECK(c.prediction.peak_bytes < peak(uniform({})));
  CHECK(!c.samples);
  // Between the all-checkpointed plan's peak and that of norms + GELU everywhere: checkpointing
  // is needed; the plan fits, and costs no more than checkpointing every block.
  vit::BlockPlan ckpt, gelu = norms;
  ckpt.checkpoint = true;
  gelu.recompute_gelu = true;
  const int64_t low = peak(uniform(ckpt)), high = peak(uniform(gelu));
  REQUIRE(low < high);
  const vit::PlanChoice mid = vit::choose_plan(small_setup(), options((low + high) / 2, true));
  CHECK(mid.prediction.peak_bytes <= (low + high) / 2);
  CHECK(mid.plan.blocks[0].checkpoint);
  CHECK(mid.relative_time > 1);
  // No uniform exact plan that fits is cheaper.
  vit::BlockPlan ckpt_gelu = gelu;
  ckpt_gelu.checkpoint = true;
  for (const vit::BlockPlan& b : {vit::BlockPlan{}, norms, gelu, ckpt, ckpt_gelu})
    if (peak(uniform(b)) <= (low + high) / 2)
      CHECK(mid.relative_time <= vit::relative_step_time(small_setup(), uniform(b)));
}

TEST_CASE("the headroom: plans fit the budget less its share, and an impossible budget says so") {
  vit::BlockPlan norms;
  norms.recompute_norms = true;
  vit::MemoryPlan first_norms = uniform({});
  first_norms.blocks[0] = norms;
  const int64_t exact = peak(uniform({}));
  // A budget the exact plan meets exactly, less 1%: the exact plan no longer fits.
  vit::PlannerOptions o = options(exact, true);
  o.headroom = 0.01;
  const vit::PlanChoice c = vit::choose_plan(small_setup(), o);
  CHECK(c.prediction.peak_bytes <= exact - static_cast<int64_t>(std::ceil(exact * 0.01)));
  CHECK(c.plan != uniform({}));
  // Nothing fits 1 MB less 1.5%: the message gives the limit the plans had to meet.
  vit::PlannerOptions tiny = options(1000000, false);
  tiny.headroom = 0.015;
  const std::string e = error_of([&] { vit::choose_plan(small_setup(), tiny); });
  CHECK(e.find("; plans must predict at most 961.91 KiB (985000 bytes: the budget less its 1.5% headroom for what the "
               "memory model does not see); sampling is not allowed (--no-sampling)") != std::string::npos);
  tiny.headroom = 1;
  CHECK(error_of([&] { vit::choose_plan(small_setup(), tiny); }) == "planner: expected a headroom in [0, 1), got 1");
}

TEST_CASE("an impossible budget states the smallest achievable peak; --no-sampling says it was not allowed") {
  const vit::PlanChoice smallest = vit::smallest_plan(small_setup(), options(0, true));
  const std::string expected = "--memory-budget 976.56 KiB (1000000 bytes) cannot be met at batch 16: the smallest "
                               "achievable peak is " +
                               format_bytes(smallest.prediction.peak_bytes) + " (" +
                               std::to_string(smallest.prediction.peak_bytes) + " bytes, with " ;
  const std::string message = error_of([] { vit::choose_plan(small_setup(), options(1000000, true)); });
  CHECK(message.rfind(expected + "blocks 0-1: checkpoint+norms+gelu; block 2: keep)", 0) == 0);
  CHECK(message == expected + "blocks 0-1: checkpoint+norms+gelu; block 2: keep)");
  CHECK(error_of([] { vit::choose_plan(small_setup(), options(1000000, false)); }) ==
        expected + "blocks 0-1: checkpoint+norms+gelu; block 2: keep); sampling is not allowed (--no-sampling)");
  // The floor is block 0's rerun in backward, at transients (the recomputed fc1 output and its
  // gradient) that no sampled rung shrinks: sampling does not lower the smallest achievable peak.
  CHECK(vit::smallest_plan(small_setup(), options(0, false)).prediction.peak_bytes == smallest.prediction.peak_bytes);
  CHECK(smallest.prediction.peak_moment == "backward, block 0: fc1+gelu (recomputed)");
}

TEST_CASE("--find-max-batch: the batch fits the budget and one more does not") {
  const int64_t budget = 60000000;
  const vit::MaxBatch max = vit::find_max_batch(small_setup(), options(budget, true));
  REQUIRE(max.batch > 1);
  CHECK(max.choice.prediction.peak_bytes <= budget);
  vit::StepSetup more = small_setup();
  more.batch = max.batch + 1;
  CHECK(error_of([&] { vit::choose_plan(more, options(budget, true)); }).find("cannot be met at batch " +
                                                                            std::to_string(max.batch + 1)) !=
        std::string::npos);
}

TEST_CASE("--plan-only prints the plan per block and the predicted peak's breakdown, and trains nothing") {
  const std::vector<std::string> base = {"--dataset", "synthetic", "--device", "cpu", "--model", "vit-tiny",
                                         "--depth", "3", "--img", "32", "--patch", "4", "--batch-size", "16",
                                         "--test-subset", "64"};
  std::string output;
  const train::RunSummary summary =
      test::run(test::with(base, {"--plan-only", "--checkpoint-blocks", "0", "--recompute-gelu"}), &output);
  CHECK(summary.steps == 0);
  CHECK(output.find("epoch 1/") == std::string::npos);
  CHECK(output.find("memory plan (from the flags, batch 16):\n  block 0: checkpoint+gelu\n  blocks 1-2: gelu\n"
                    "predicted peak allocated: ") != std::string::npos);
  for (const char* row : {"  parameters ", "  gradients ", "  optimizer state ", "  data ", "  activations (kept) ",
                          "    block inputs ", "  transient ", "  first step (creates the optimizer state): ",
                          "predicted step time: "})
    CHECK_MESSAGE(output.find(row) != std::string::npos, row);
  // With a budget: the chosen plan, then after the first steps the measured peak beside the prediction.
  test::run(test::with(base, {"--memory-budget", "80MB", "--max-steps", "2"}), &output);
  CHECK(output.find("memory plan (chosen for --memory-budget 76.29 MiB (80000000 bytes), batch 16):") !=
        std::string::npos);
  const size_t at = output.find("memory: measured peak allocated after steps 1-2 ");
  REQUIRE(at != std::string::npos);
  const double ratio = std::stod(output.substr(output.find("ratio ", at) + 6));
  CHECK(ratio > 0.95);
  CHECK(ratio < 1.05);
  // --find-max-batch prints the batch and its plan, and trains nothing.
  const train::RunSummary found = test::run(test::with(base, {"--memory-budget", "80MB", "--find-max-batch"}), &output);
  CHECK(found.steps == 0);
  CHECK(output.find("find-max-batch: the largest batch that fits --memory-budget 76.29 MiB (80000000 bytes) is ") !=
        std::string::npos);
}

TEST_CASE("--memory-report shows per block what is kept, recomputed and sampled, each storage once") {
  std::string output;
  test::run({"--dataset", "synthetic", "--device", "cpu", "--model", "vit-tiny", "--depth", "3", "--img", "32",
             "--patch", "4", "--batch-size", "16", "--test-subset", "64", "--max-steps", "1", "--memory-report",
             "--checkpoint-blocks", "0", "--recompute-gelu", "--backward", "wta-crs", "--wta-targets", "fc2",
             "--wta-blocks", "1"},
            &output);
  const size_t at = output.find("Kept for backward after forward, per block and kind (memory model, each storage once):\n"
                                "  block 0 (checkpoint+gelu): kept ");
  REQUIRE(at != std::string::npos);
  CHECK(output.find("recomputed: the whole block (checkpoint rerun); sampled: -", at) != std::string::npos);
  CHECK(output.find("  block 1 (gelu+wta(fc2 0.3)): kept ", at) != std::string::npos);
  CHECK(output.find("recomputed: fc1 output (fc1+gelu); sampled: wta-crs fc2 0.3", at) != std::string::npos);
  // The model's bytes live at the end of forward against the allocator's count then.
  const size_t sum = output.find("  sum kept ", at);
  REQUIRE(sum != std::string::npos);
  const double ratio = std::stod(output.substr(output.find("ratio ", sum) + 6));
  CHECK(ratio > 0.95);
  CHECK(ratio < 1.05);
}

TEST_CASE("--calibrate times the uniform plans and predicts the step time in ms") {
  CHECK(parse_error({"--calibrate"}) ==
        "--calibrate needs --plan-only or --memory-budget (it calibrates their step-time predictions)");
  std::string output;
  test::run({"--dataset", "synthetic", "--device", "cpu", "--model", "vit-tiny", "--depth", "1", "--img", "16",
             "--patch", "4", "--batch-size", "4", "--test-subset", "64", "--plan-only", "--calibrate"},
            &output);
  CHECK(output.find("calibration (median of 3 timed steps, batch 4): exact ") != std::string::npos);
  const size_t at = output.find("predicted step time (calibrated): ");
  REQUIRE(at != std::string::npos);
  // The flags' plan is the exact one: its prediction is the measured exact step.
  const double ms = std::stod(output.substr(at + 34));
  const size_t exact = output.find("exact ", output.find("calibration ("));
  CHECK(ms == doctest::Approx(std::stod(output.substr(exact + 6))).epsilon(0.01));
}

TEST_CASE("--plan-only with --optimizer-in-backward: calibrated with it, and a lower peak where gradients set it") {
  auto predicted_peak = [](const std::vector<std::string>& extra, std::string& output) {
    std::vector<std::string> args = {"--dataset", "synthetic", "--device", "cpu", "--model", "vit-tiny", "--depth", "2",
                                     "--img", "16", "--patch", "4", "--batch-size", "2", "--test-subset", "64",
                                     "--clip-grad", "0", "--plan-only", "--calibrate"};
    args.insert(args.end(), extra.begin(), extra.end());
    test::run(args, &output);
    const size_t line = output.find("predicted peak allocated");
    REQUIRE(line != std::string::npos);
    const size_t open = output.find('(', line);
    return std::stoll(output.substr(open + 1));
  };
  std::string plain_output, in_backward_output;
  const int64_t plain = predicted_peak({}, plain_output);
  const int64_t in_backward = predicted_peak({"--optimizer-in-backward"}, in_backward_output);
  CHECK(in_backward_output.find("calibration (median of 3 timed steps, batch 2): exact ") != std::string::npos);
  // At batch 2 the activations are small: the peak is the end of backward, with every gradient
  // alive unless the optimizer has consumed it.
  CHECK(in_backward < plain);
}
