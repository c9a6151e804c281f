// The study's plots: the rows' data as text files, one gnuplot script, gnuplot run on it.
#include "apps/study/plots.h"

#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"

namespace tg::study {

namespace {

// `text` as a piece of a file name: letters, digits, '-' and '_'; anything else becomes '_'.
std::string file_part(const std::string& text) {
  std::string out = text;
  for (char& c : out)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  return out;
}

// `text` inside a gnuplot single-quoted string (a quote is written twice).
std::string gnuplot_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// `text` inside a shell single-quoted string.
std::string shell_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string label(const nlohmann::json& options) {
  const std::string backward = options.value("backward", std::string());
  if (backward == "exact") return "exact";
  char ratio[32];
  std::snprintf(ratio, sizeof ratio, "%.2f", ratio_of(options));
  return backward + " " + ratio + " (" + options.value("wta_targets", std::string()) + ")";
}

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

// The accuracies of every run of `row` at each epoch that all of them evaluated (a run's last
// evaluation of an epoch counts): epoch -> one value per run.
std::map<int64_t, std::vector<double>> accuracy_by_epoch(const SeedGroup& row) {
  std::map<int64_t, std::vector<double>> out;
  for (const RunMetrics* run : row.runs) {
    std::map<int64_t, double> last;
    for (const auto& [epoch, acc] : run->accuracy_by_epoch) last[epoch] = acc;
    for (const auto& [epoch, acc] : last) out[epoch].push_back(acc);
  }
  for (auto it = out.begin(); it != out.end();)
    it = it->second.size() == row.runs.size() ? std::next(it) : out.erase(it);
  return out;
}

class Writer {
 public:
  explicit Writer(std::filesystem::path folder) : folder_(std::move(folder)) {}

  // A data file in the folder; its name (relative, as the script uses it).
  std::string data(const std::string& name, const std::string& header, const std::string& body) const {
    std::ofstream out(folder_ / name);
    out << "# " << header << "\n" << body;
    TG_CHECK(out.good(), IoError, "study plots: cannot write '", (folder_ / name).string(), "'");
    return name;
  }

 private:
  std::filesystem::path folder_;
};

}  // namespace

std::vector<std::string> write_plots(const std::vector<RunMetrics>& runs, const std::string& folder) {
  std::error_code error;
  std::filesystem::create_directories(folder, error);
  TG_CHECK(!error, IoError, "study plots: cannot create the folder '", folder, "': ", error.message());
  const std::vector<SeedGroup> rows = group_by_seed(runs);
  // The rows per regime and dataset, in report order.
  std::vector<std::pair<std::string, std::vector<const SeedGroup*>>> panels;
  for (const SeedGroup& row : rows) {
    const std::string panel = regime_of(row.options()) + "_" + row.options().value("dataset", std::string());
    if (panels.empty() || panels.back().first != panel) panels.push_back({panel, {}});
    panels.back().second.push_back(&row);
  }
  const Writer writer(folder);
  std::string script = "set terminal pngcairo size 960,640 font ',11'\nset grid\n";
  std::vector<std::string> pngs;
  char line[256];
  for (const auto& [panel, members] : panels) {
    const std::string title = regime_of(members.front()->options()) + ", " +
                              members.front()->options().value("dataset", std::string());
    const std::string stem = file_part(panel);
    // Accuracy against epoch: the mean line in the band of the seeds.
    std::string plot;
    for (size_t i = 0; i < members.size(); ++i) {
      std::string body;
      for (const auto& [epoch, accs] : accuracy_by_epoch(*members[i])) {
        std::snprintf(line, sizeof line, "%lld %.4f %.4f %.4f\n", static_cast<long long>(epoch), mean(accs),
                      *std::min_element(accs.begin(), accs.end()), *std::max_element(accs.begin(), accs.end()));
        body += line;
      }
      const std::string file = writer.data("accuracy_" + stem + "_" + std::to_string(i) + ".dat",
                                           "epoch mean_test_acc min_test_acc max_test_acc (" +
                                               std::to_string(members[i]->runs.size()) + " seeds)",
                                           body);
      const std::string color = " lc " + std::to_string(i + 1);
      plot += std::string(plot.empty() ? "plot " : ", ") + gnuplot_quoted(file) + " using 1:3:4 with filledcurves" +
              color + " notitle, " + gnuplot_quoted(file) + " using 1:2 with linespoints" + color + " title " +
              gnuplot_quoted(label(members[i]->options()));
    }
    pngs.push_back("accuracy_" + stem + ".png");
    script += "set output " + gnuplot_quoted(pngs.back()) + "\nset title " +
              gnuplot_quoted(title + ": test accuracy (mean over seeds, band: lowest to highest)") +
              "\nset xlabel 'epoch'\nset ylabel 'test accuracy (%)'\nset key bottom right\nset offsets 0, 0, 0, 0\n"
              "set style fill transparent solid 0.2 noborder\n" + plot + "\n";
    // Peak memory against the ratio, and final accuracy against peak memory: a point per row.
    std::string memory, frontier;
    for (const SeedGroup* row : members) {
      std::vector<double> finals, peaks;
      for (const RunMetrics* run : row->runs) {
        finals.push_back(run->final_acc);
        peaks.push_back(static_cast<double>(run->peak_allocated_bytes) / 1e9);
      }
      const double peak = *std::max_element(peaks.begin(), peaks.end());
      const std::string name = label(row->options());
      std::snprintf(line, sizeof line, "%.2f %.4f \"%s\"\n", ratio_of(row->options()), peak, name.c_str());
      memory += line;
      std::snprintf(line, sizeof line, "%.4f %.4f \"%s\"\n", peak, mean(finals), name.c_str());
      frontier += line;
    }
    const std::string memory_file = writer.data("memory_" + stem + ".dat", "ratio peak_allocated_GB label", memory);
    const std::string frontier_file =
        writer.data("accuracy_memory_" + stem + ".dat", "peak_allocated_GB mean_final_test_acc label", frontier);
    // A labelled point per row of `file` (x y "label").
    auto points = [&](const std::string& png, const std::string& what, const std::string& xlabel,
                      const std::string& ylabel, const std::string& file) {
      pngs.push_back(png);
      script += "set output " + gnuplot_quoted(png) + "\nset title " + gnuplot_quoted(title + ": " + what) +
                "\nset xlabel " + gnuplot_quoted(xlabel) + "\nset ylabel " + gnuplot_quoted(ylabel) +
                "\nset key off\nset offsets graph 0.1, graph 0.1, graph 0.1, graph 0.1\nplot " + gnuplot_quoted(file) + " using 1:2 with points pt 7 ps 1.5, " +
                gnuplot_quoted(file) + " using 1:2:3 with labels offset 0,1 font ',9'\n";
    };
    points("memory_" + stem + ".png", "peak allocated memory", "ratio (1: exact)", "peak allocated (GB)", memory_file);
    points("accuracy_memory_" + stem + ".png", "final test accuracy (mean over seeds) against peak memory",
           "peak allocated (GB)", "test accuracy (%)", frontier_file);
  }
  script += "unset output\n";
  writer.data("plots.gp", "gnuplot script of the study's plots (study_report --plots); run: gnuplot plots.gp", script);

  TG_CHECK(std::system("command -v gnuplot > /dev/null 2>&1") == 0, IoError,
           "study plots: gnuplot is not installed (on Debian: apt-get install gnuplot-nox)");
  const std::string log = (std::filesystem::path(folder) / "gnuplot.log").string();
  const int status = std::system(("cd " + shell_quoted(folder) + " && gnuplot plots.gp > gnuplot.log 2>&1").c_str());
  TG_CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, IoError, "study plots: gnuplot failed on '",
           (std::filesystem::path(folder) / "plots.gp").string(), "' (its output: '", log, "')");
  std::vector<std::string> paths;
  for (const std::string& png : pngs) paths.push_back((std::filesystem::path(folder) / png).string());
  return paths;
}

}  // namespace tg::study
