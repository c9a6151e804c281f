// The study report on small synthetic metrics files: the table (grouping by configuration over
// seeds, mean ± sample std, the change against the exact row, peak, step time, img/s, row order)
// and the errors for files that are not finished train_vit runs or runs that collide.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>

#include "apps/study/plots.h"
#include "apps/study/report.h"
#include "core/error.h"
#include "tests/apps/train_vit_fixture.h"
#include "tests/support/test_support.h"

using namespace tg;

namespace {

// A metrics file of a run with `flags`: its config record, three train records (img/s 100 at
// start-up, then 1000 and 1200) and one eval record per accuracy; peak_allocated_bytes `peak`.
std::string write_run(const test::ScratchDir& dir, const std::string& name, const std::vector<std::string>& flags,
                      const std::vector<double>& accuracies, int64_t peak) {
  const std::string path = dir / name;
  std::ofstream out(path);
  out << nlohmann::json{{"type", "config"}, {"options", train::to_json(test::parse_args(flags))}}.dump() << "\n";
  int64_t step = 0;
  for (double img_per_s : {100.0, 1000.0, 1200.0})
    out << nlohmann::json{{"type", "train"}, {"step", ++step}, {"img_per_s", img_per_s}, {"peak_allocated_bytes", peak / 2}}
               .dump()
        << "\n";
  for (double acc : accuracies)
    out << nlohmann::json{{"type", "eval"}, {"step", step}, {"test_acc", acc}, {"peak_allocated_bytes", peak}}.dump() << "\n";
  return path;
}

std::vector<std::string> flags(const std::string& seed, std::vector<std::string> more = {}) {
  std::vector<std::string> out = {"--dataset", "synthetic", "--device", "cpu", "--batch-size", "128", "--seed", seed};
  out.insert(out.end(), more.begin(), more.end());
  return out;
}

}  // namespace

TEST_CASE("the study report: one row per configuration over its seeds, compared with its exact row") {
  test::ScratchDir dir("study_report");
  const std::string weights = dir / "pre.safetensors";
  std::ofstream(weights) << "not read";
  const std::vector<std::string> sampled = {"--backward", "wta-crs", "--ratio", "0.5", "--wta-targets", "qkv,proj,fc1,fc2"};
  std::vector<study::RunMetrics> runs;
  for (const std::string& file :
       {write_run(dir, "s0.jsonl", flags("0", sampled), {50, 57}, 1 << 30),
        write_run(dir, "e0.jsonl", flags("0"), {55, 61, 60}, 3 << 29),
        write_run(dir, "e1.jsonl", flags("1"), {63, 62}, 3 << 29),
        write_run(dir, "s1.jsonl", flags("1", sampled), {58}, 1 << 29),
        write_run(dir, "f0.jsonl", flags("0", {"--init-from", weights, "--reset-head"}), {70}, 1 << 29)})
    runs.push_back(study::read_run(file));
  CHECK(runs[1].final_acc == 60);
  CHECK(runs[1].best_acc == 61);
  CHECK(runs[1].img_per_s == 1100);  // the start-up record left out
  CHECK(runs[1].peak_allocated_bytes == 3 << 29);
  // Exact: final 60, 62 -> 61 ± 1.41; best 61, 63. Sampled: final 57, 58 -> 57.5 ± 0.71, 3.5 below.
  // Step time 128 / 1100 img/s = 116.4 ms.
  CHECK(study::report_markdown(runs) ==
        "| regime | dataset | backward | ratio | targets | seeds | final acc (%) | Δ final vs exact | best acc (%) | "
        "peak allocated | step (ms) | img/s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        "| fine-tune | synthetic | exact | 1.00 | - | 1 | 70.00 | - | 70.00 | 512.00 MiB | 116.4 | 1100 |\n"
        "| scratch | synthetic | exact | 1.00 | - | 2 | 61.00 ± 1.41 | - | 62.00 ± 1.41 | 1.50 GiB | 116.4 ± 0.0 | "
        "1100 ± 0 |\n"
        "| scratch | synthetic | wta-crs | 0.50 | qkv,proj,fc1,fc2 | 2 | 57.50 ± 0.71 | -3.50 | 57.50 ± 0.71 | 1.00 GiB | "
        "116.4 ± 0.0 | 1100 ± 0 |\n"
        "\nMean ± sample standard deviation over the seeds of a row (the value alone for one seed). Δ: the row's mean "
        "final accuracy minus that of the exact row of the same configuration. Peak allocated: the largest over the "
        "row's runs. Step time: batch size / img/s.\n");
}

TEST_CASE("a sampled row on the explicit attention is compared with the exact row on the fused one") {
  test::ScratchDir dir("study_report_attention");
  const std::vector<std::string> all = {"--backward", "wta-crs", "--ratio", "0.5", "--wta-targets", "all",
                                        "--attention", "explicit"};
  const std::vector<study::RunMetrics> runs = {study::read_run(write_run(dir, "e.jsonl", flags("0"), {60}, 1 << 30)),
                                               study::read_run(write_run(dir, "a.jsonl", flags("0", all), {57}, 1 << 29))};
  CHECK(study::report_markdown(runs).find("| scratch | synthetic | wta-crs | 0.50 | all | 1 | 57.00 | -3.00 | 57.00 |") !=
        std::string::npos);
}

TEST_CASE("a row with per-layer ratios is its own row, named so, and compared with the exact row") {
  test::ScratchDir dir("study_report_allocation");
  const std::vector<std::string> uniform = {"--backward", "wta-crs", "--ratio", "0.5"};
  std::vector<std::string> allocated = uniform;
  allocated.insert(allocated.end(), {"--wta-allocation", "variance"});
  const std::vector<study::RunMetrics> runs = {study::read_run(write_run(dir, "e.jsonl", flags("0"), {60}, 1 << 30)),
                                               study::read_run(write_run(dir, "v.jsonl", flags("0", allocated), {59.5}, 1 << 29)),
                                               study::read_run(write_run(dir, "u.jsonl", flags("0", uniform), {58}, 1 << 29))};
  const std::string report = study::report_markdown(runs);
  const size_t u = report.find("| scratch | synthetic | wta-crs | 0.50 | qkv,proj,fc1,fc2 | 1 | 58.00 | -2.00 |");
  const size_t v = report.find(
      "| scratch | synthetic | wta-crs (variance allocation) | 0.50 | qkv,proj,fc1,fc2 | 1 | 59.50 | -0.50 |");
  CHECK(u != std::string::npos);
  CHECK(v != std::string::npos);
  CHECK(u < v);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST_CASE("the study's plots: the rows' data files and one PNG per plot, drawn by gnuplot") {
  test::ScratchDir dir("study_plots");
  const std::vector<std::string> sampled = {"--backward", "wta-crs", "--ratio", "0.5", "--wta-targets", "qkv,proj,fc1,fc2"};
  std::vector<study::RunMetrics> runs;
  for (const std::string& file : {write_run(dir, "e0.jsonl", flags("0"), {55, 61, 60}, 3 << 29),
                                  write_run(dir, "e1.jsonl", flags("1"), {63, 62}, 3 << 29),
                                  write_run(dir, "s0.jsonl", flags("0", sampled), {50, 57}, 1 << 30),
                                  write_run(dir, "s1.jsonl", flags("1", sampled), {58}, 1 << 29)})
    runs.push_back(study::read_run(file));
  CHECK(runs[0].accuracy_by_epoch == std::vector<std::pair<int64_t, double>>{{1, 55}, {2, 61}, {3, 60}});
  const std::string plots = dir / "plots";
  const std::vector<std::string> pngs = study::write_plots(runs, plots);
  CHECK(pngs == std::vector<std::string>{plots + "/accuracy_scratch_synthetic.png", plots + "/memory_scratch_synthetic.png",
                                         plots + "/accuracy_memory_scratch_synthetic.png"});
  for (const std::string& png : pngs) {
    CAPTURE(png);
    CHECK(read_file(png).rfind("\x89PNG\r\n\x1a\n", 0) == 0);
  }
  // Epochs every seed evaluated: the exact row's 1 and 2 (seed 1 stopped there), the sampled row's 1.
  CHECK(read_file(plots + "/accuracy_scratch_synthetic_0.dat") ==
        "# epoch mean_test_acc min_test_acc max_test_acc (2 seeds)\n1 59.0000 55.0000 63.0000\n2 61.5000 61.0000 62.0000\n");
  CHECK(read_file(plots + "/accuracy_scratch_synthetic_1.dat") ==
        "# epoch mean_test_acc min_test_acc max_test_acc (2 seeds)\n1 54.0000 50.0000 58.0000\n");
  CHECK(read_file(plots + "/memory_scratch_synthetic.dat") ==
        "# ratio peak_allocated_GB label\n1.00 1.6106 \"exact\"\n0.50 1.0737 \"wta-crs 0.50 (qkv,proj,fc1,fc2)\"\n");
  CHECK(read_file(plots + "/accuracy_memory_scratch_synthetic.dat") ==
        "# peak_allocated_GB mean_final_test_acc label\n1.6106 61.0000 \"exact\"\n1.0737 57.5000 \"wta-crs 0.50 "
        "(qkv,proj,fc1,fc2)\"\n");
  CHECK(read_file(plots + "/plots.gp").find("set terminal pngcairo") != std::string::npos);
}

TEST_CASE("the study report refuses files that are not finished runs, and two files of one run") {
  test::ScratchDir dir("study_report_errors");
  const std::string a = write_run(dir, "a.jsonl", flags("3"), {50}, 1 << 20);
  const std::string b = write_run(dir, "b.jsonl", flags("3"), {51}, 1 << 20);
  CHECK(test::thrown_message([&] { study::report_markdown({study::read_run(a), study::read_run(b)}); }) ==
        "study report: '" + a + "' and '" + b + "' are the same run (same configuration and seed 3)");
  const std::string unfinished = write_run(dir, "u.jsonl", flags("4"), {}, 1 << 20);
  CHECK(test::thrown_message([&] { study::read_run(unfinished); }) ==
        "study report: '" + unfinished + "' has 0 eval and 3 train records, expected at least one of each (an "
        "unfinished run?)");
  std::ofstream(dir / "bad.jsonl") << "{\"type\": \"train\"}\nnot json\n";
  CHECK(test::thrown_message([&] { study::read_run(dir / "bad.jsonl"); }) ==
        "study report: '" + (dir / "bad.jsonl") + "' line 2 is not a JSON object");
  std::ofstream(dir / "plain.jsonl") << "{\"type\": \"eval\", \"test_acc\": 5}\n";
  CHECK(test::thrown_message([&] { study::read_run(dir / "plain.jsonl"); }) ==
        "study report: '" + (dir / "plain.jsonl") + "' has no config record (expected a train_vit --metrics-out file)");
  CHECK(test::thrown_message([&] { study::read_run(dir / "missing.jsonl"); }) ==
        "study report: cannot read '" + (dir / "missing.jsonl") + "'");
  // A resumed run appends a second config record; one with another trajectory is refused.
  const nlohmann::json other = train::to_json(test::parse_args(flags("3", {"--lr", "0.5"})));
  std::ofstream(a, std::ios::app) << nlohmann::json{{"type", "config"}, {"options", other}}.dump() << "\n";
  CHECK(test::thrown_message([&] { study::read_run(a); }) ==
        "study report: '" + a + "' line 6: a second config record (a resumed run) that differs from the first: --lr "
        "0.001 (checkpoint) vs 0.5 (this run)");
}
