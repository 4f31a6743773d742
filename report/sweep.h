// SWEEP_DIR/report.html: every configuration of a sweep in one table (ranked on validation
// accuracy, as results.json is) and validation accuracy plotted against each swept setting, with
// the same plots as val_accuracy_vs_<setting>.png. Built from SWEEP_DIR/results.json alone.
#pragma once
#include <string>
#include <vector>

namespace vggcache {

struct SweepReportResult {
  std::string html;                // path of report.html
  std::vector<std::string> swept;  // settings whose values differ between configurations
  std::vector<std::string> pngs;   // paths of the PNG plots
  size_t configurations = 0;       // rows in the table
};

// Throws Error(kIo) when results.json is unreadable, kCorrupt when malformed.
SweepReportResult write_sweep_report(const std::string& sweep_dir);

}  // namespace vggcache
