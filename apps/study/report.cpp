// The study report: metrics files -> runs -> rows of seeds -> markdown.
#include "apps/study/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <tuple>

#include "apps/train_vit/options.h"
#include "core/error.h"
#include "core/memory_stats.h"

namespace tg::study {

namespace {

// The trajectory differences of two configurations, without those starting with any of `ignored`
// ("--seed", ...).
std::vector<std::string> differences(const nlohmann::json& a, const nlohmann::json& b,
                                     const std::vector<std::string>& ignored) {
  std::vector<std::string> out;
  for (const std::string& d : train::trajectory_differences(a, b)) {
    const bool skip = std::any_of(ignored.begin(), ignored.end(), [&](const std::string& flag) {
      return d.rfind(flag + " ", 0) == 0;
    });
    if (!skip) out.push_back(d);
  }
  return out;
}

bool exact(const nlohmann::json& options) { return options.value("backward", std::string()) == "exact"; }

struct Stats {
  double mean = 0, std = 0;
  size_t n = 0;
};
Stats stats(const std::vector<double>& values) {
  Stats s;
  s.n = values.size();
  for (double v : values) s.mean += v / static_cast<double>(s.n);
  if (s.n > 1) {
    double squares = 0;
    for (double v : values) squares += (v - s.mean) * (v - s.mean);
    s.std = std::sqrt(squares / static_cast<double>(s.n - 1));
  }
  return s;
}

std::string fixed(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}
std::string mean_std(const Stats& s, int digits) {
  return s.n > 1 ? fixed(s.mean, digits) + " ± " + fixed(s.std, digits) : fixed(s.mean, digits);
}

std::vector<double> values(const SeedGroup& row, double RunMetrics::*field) {
  std::vector<double> out;
  for (const RunMetrics* r : row.runs) out.push_back(r->*field);
  return out;
}

}  // namespace

std::string regime_of(const nlohmann::json& options) {
  return options.value("init_from", std::string()).empty() ? "scratch" : "fine-tune";
}

double ratio_of(const nlohmann::json& options) { return exact(options) ? 1.0 : options.value("ratio", 0.0); }

RunMetrics read_run(const std::string& path) {
  std::ifstream in(path);
  TG_CHECK(in.good(), IoError, "study report: cannot read '", path, "'");
  RunMetrics run;
  run.file = path;
  std::vector<double> accuracies, throughputs;
  bool configured = false;
  int64_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.empty()) continue;
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    TG_CHECK(record.is_object(), IoError, "study report: '", path, "' line ", number, " is not a JSON object");
    const std::string type = record.value("type", std::string());
    if (type == "config") {
      TG_CHECK(record.contains("options") && record["options"].is_object(), IoError, "study report: '", path,
               "' line ", number, ": a config record without an options object");
      if (!configured) run.options = record["options"];
      const std::vector<std::string> changed = differences(run.options, record["options"], {});
      TG_CHECK(changed.empty(), IoError, "study report: '", path, "' line ", number,
               ": a second config record (a resumed run) that differs from the first: ", changed.front());
      configured = true;
      continue;
    }
    if (type != "train" && type != "eval") continue;
    run.peak_allocated_bytes = std::max(run.peak_allocated_bytes, record.value("peak_allocated_bytes", int64_t{0}));
    (type == "eval" ? accuracies : throughputs).push_back(record.value(type == "eval" ? "test_acc" : "img_per_s", 0.0));
    if (type == "eval")
      run.accuracy_by_epoch.emplace_back(record.value("epoch", static_cast<int64_t>(accuracies.size())),
                                         accuracies.back());
  }
  TG_CHECK(configured, IoError, "study report: '", path,
           "' has no config record (expected a train_vit --metrics-out file)");
  TG_CHECK(!accuracies.empty() && !throughputs.empty(), IoError, "study report: '", path, "' has ", accuracies.size(),
           " eval and ", throughputs.size(), " train records, expected at least one of each (an unfinished run?)");
  run.final_acc = accuracies.back();
  run.best_acc = *std::max_element(accuracies.begin(), accuracies.end());
  if (throughputs.size() > 1) throughputs.erase(throughputs.begin());  // the first includes start-up
  run.img_per_s = stats(throughputs).mean;
  return run;
}

std::vector<SeedGroup> group_by_seed(const std::vector<RunMetrics>& runs) {
  std::vector<SeedGroup> rows;
  for (const RunMetrics& run : runs) {
    auto row = std::find_if(rows.begin(), rows.end(), [&](const SeedGroup& r) {
      return regime_of(r.options()) == regime_of(run.options) &&
             differences(r.options(), run.options, {"--seed"}).empty();
    });
    if (row == rows.end()) {
      rows.push_back({{&run}});
      continue;
    }
    const nlohmann::json seed = run.options.value("seed", nlohmann::json());
    for (const RunMetrics* other : row->runs)
      TG_CHECK(other->options.value("seed", nlohmann::json()) != seed, ValueError, "study report: '", other->file,
               "' and '", run.file, "' are the same run (same configuration and seed ", seed.dump(), ")");
    row->runs.push_back(&run);
  }
  auto key = [](const SeedGroup& r) {
    const nlohmann::json& o = r.options();
    return std::make_tuple(regime_of(o), o.value("dataset", std::string()), !exact(o), -ratio_of(o),
                           o.value("wta_targets", std::string()), o.value("wta_allocation", std::string()),
                           r.runs.front()->file);
  };
  std::sort(rows.begin(), rows.end(), [&](const SeedGroup& a, const SeedGroup& b) { return key(a) < key(b); });
  return rows;
}

std::string report_markdown(const std::vector<RunMetrics>& runs) {
  const std::vector<SeedGroup> rows = group_by_seed(runs);

  // The exact row a row is compared with: the same regime, equal but for the backward and what
  // saves memory (the attention too: sampling the attention matmuls needs the explicit one, the
  // same function as the fused attention of the exact run), and the estimator's knobs.
  const std::vector<std::string> memory_flags = {
      "--seed",          "--backward",        "--ratio",      "--wta-targets",  "--wta-blocks",    "--wta-proxy",
      "--wta-ema-beta",  "--wta-k-min",       "--wta-alpha",  "--recompute-gelu", "--saved-dtype", "--attention",
      "--wta-allocation", "--wta-allocation-batches"};
  std::string out =
      "| regime | dataset | backward | ratio | targets | seeds | final acc (%) | Δ final vs exact | best acc (%) | "
      "peak allocated | step (ms) | img/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const SeedGroup& row : rows) {
    const nlohmann::json& o = row.options();
    const Stats final_acc = stats(values(row, &RunMetrics::final_acc)), best = stats(values(row, &RunMetrics::best_acc));
    const Stats throughput = stats(values(row, &RunMetrics::img_per_s));
    std::vector<double> step_ms, peaks;
    for (const RunMetrics* r : row.runs) {
      // img/s counts the whole job: the global batch is --batch-size x the world size.
      const int64_t batch = o.value("batch_size", int64_t{0}) * o.value("world_size", int64_t{1});
      step_ms.push_back(1000.0 * static_cast<double>(batch) / r->img_per_s);
      peaks.push_back(static_cast<double>(r->peak_allocated_bytes));
    }
    std::string delta = "-";
    for (const SeedGroup& reference : rows)
      if (!exact(o) && exact(reference.options()) && regime_of(reference.options()) == regime_of(o) &&
          differences(reference.options(), o, memory_flags).empty()) {
        const double d = final_acc.mean - stats(values(reference, &RunMetrics::final_acc)).mean;
        char text[64];
        std::snprintf(text, sizeof text, "%+.2f", d);
        delta = text;
      }
    const double peak_max = *std::max_element(peaks.begin(), peaks.end());
    // Per-layer ratios (--wta-allocation variance): the ratio column is the uniform plan's whose memory they keep.
    const std::string backward = o.value("backward", std::string()) +
                                 (o.value("wta_allocation", std::string()) == "variance" ? " (variance allocation)" : "");
    out += "| " + regime_of(o) + " | " + o.value("dataset", std::string()) + " | " + backward +
           " | " + fixed(ratio_of(o), 2) + " | " + (exact(o) ? std::string("-") : o.value("wta_targets", std::string())) +
           " | " + std::to_string(row.runs.size()) + " | " + mean_std(final_acc, 2) + " | " + delta + " | " +
           mean_std(best, 2) + " | " + format_bytes(static_cast<int64_t>(peak_max)) + " | " +
           mean_std(stats(step_ms), 1) + " | " + mean_std(throughput, 0) + " |\n";
  }
  out += "\nMean ± sample standard deviation over the seeds of a row (the value alone for one seed). "
         "Δ: the row's mean final accuracy minus that of the exact row of the same configuration. "
         "Peak allocated: the largest over the row's runs. Step time: batch size / img/s.\n";
  return out;
}

}  // namespace tg::study
