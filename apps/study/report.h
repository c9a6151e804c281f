// The study's report: reads train_vit's --metrics-out files (JSON Lines, apps/train_vit/metrics.h),
// groups the runs that differ only in --seed, and writes markdown tables of final and best test
// accuracy (mean ± sample standard deviation over seeds, and the change against the exact run of
// the same regime and dataset), peak allocated memory, step time and training throughput.
//
// A run: the first "config" record of its file (a resumed run appends another, which must agree)
// and every "train" and "eval" record. final = the last evaluation's test_acc, best = the
// largest; peak = the largest peak_allocated_bytes; img/s = the mean img_per_s of the train
// records after the first (which includes start-up), or the first when it is the only one;
// step time = batch_size / img/s. Regime: "fine-tune" with --init-from, else "scratch".
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tg::study {

struct RunMetrics {
  std::string file;
  nlohmann::json options;  // the config record's "options"
  double final_acc = 0, best_acc = 0, img_per_s = 0;
  int64_t peak_allocated_bytes = 0;
  // Test accuracy by epoch: each eval record's (epoch, test_acc), in file order (the record's
  // position, 1-based, when it has no epoch).
  std::vector<std::pair<int64_t, double>> accuracy_by_epoch;
};

// Reads one metrics file. IoError naming the file when it cannot be read, a line is not JSON,
// there is no config record, the config records disagree, or there is no eval or train record.
RunMetrics read_run(const std::string& path);

// The runs of one configuration that differ only in the seed: one row of the report.
struct SeedGroup {
  std::vector<const RunMetrics*> runs;
  const nlohmann::json& options() const { return runs.front()->options; }
};

// `runs` grouped into rows and sorted (regime, dataset, exact first, ratio descending, targets).
// ValueError naming both files when two runs of a row share a seed.
std::vector<SeedGroup> group_by_seed(const std::vector<RunMetrics>& runs);

// "fine-tune" (the run has --init-from) or "scratch"; the ratio (1 for exact).
std::string regime_of(const nlohmann::json& options);
double ratio_of(const nlohmann::json& options);

// The markdown tables of `runs` (one row per group of runs of one regime that differ only in the
// seed, sorted by regime, dataset, then exact first and ratio descending). ValueError naming both files when
// two runs of one row differ in anything else that changes the trajectory, or share a seed.
std::string report_markdown(const std::vector<RunMetrics>& runs);

}  // namespace tg::study
