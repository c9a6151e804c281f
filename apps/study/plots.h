// The study's plots, drawn by gnuplot (the Debian package gnuplot-nox) as PNG files, per regime
// and dataset of the report's rows (apps/study/report.h):
//   accuracy_<regime>_<dataset>.png         test accuracy against epoch, one line per row (the
//                                           mean over its seeds) in a band from the lowest to
//                                           the highest seed;
//   memory_<regime>_<dataset>.png           peak allocated memory (GB) against the ratio;
//   accuracy_memory_<regime>_<dataset>.png  final accuracy (mean over seeds) against peak memory.
// Each plot's data are text files beside it (<plot>_<row>.dat, the columns named in their first
// line) and the script that draws them all is plots.gp, so a plot can be redrawn or restyled by
// hand.
#pragma once

#include <string>
#include <vector>

#include "apps/study/report.h"

namespace tg::study {

// Writes the data files and plots.gp into `folder` (created if missing) and runs gnuplot on the
// script; returns the PNG files' paths in the order drawn. IoError when a file cannot be written,
// or gnuplot is missing (naming the package) or fails.
std::vector<std::string> write_plots(const std::vector<RunMetrics>& runs, const std::string& folder);

}  // namespace tg::study
