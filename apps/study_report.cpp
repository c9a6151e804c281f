// study_report: the study's markdown tables (apps/study/report.h) and, with --plots, its gnuplot
// plots (apps/study/plots.h) from train_vit --metrics-out files.
// Exit codes: 0 success, 2 usage error, 1 unreadable or inconsistent metrics.
#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>

#include "apps/study/plots.h"
#include "apps/study/report.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app("study_report: markdown tables of train_vit metrics files, one row per configuration over its seeds",
               "study_report");
  std::vector<std::string> files;
  std::string out_path, plots_dir;
  app.add_option("files", files, "train_vit --metrics-out files (JSON Lines)")->required();
  app.add_option("--out", out_path, "write the tables to this file (default: standard output)");
  app.add_option("--plots", plots_dir,
                 "also draw the plots (PNG, with gnuplot) into this folder: accuracy by epoch, peak memory by ratio, "
                 "accuracy against peak memory, per regime and dataset");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "study_report: error: " << e.what() << " (study_report --help lists the flags)\n";
    return 2;
  }
  try {
    std::vector<tg::study::RunMetrics> runs;
    for (const std::string& file : files) runs.push_back(tg::study::read_run(file));
    const std::string markdown = tg::study::report_markdown(runs);
    if (!plots_dir.empty())
      for (const std::string& png : tg::study::write_plots(runs, plots_dir)) std::cerr << "study_report: wrote " << png << "\n";
    if (out_path.empty()) {
      std::cout << markdown;
      return 0;
    }
    std::ofstream out(out_path);
    out << markdown;
    TG_CHECK(out.good(), IoError, "study_report: cannot write '", out_path, "'");
  } catch (const tg::Error& e) {
    std::cerr << "study_report: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
