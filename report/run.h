// RUN_DIR/report.html, one self-contained page about a training run, with its figures also as
// PNG files: learning_curves.png, confusion_matrix.png, roc.png (two classes only),
// test_grid.png and confident_wrong.png. Built from the run's own files (summary.json,
// metrics.jsonl, predictions.csv), so it can be rebuilt from RUN_DIR alone.
#pragma once
#include <string>

namespace vggcache {

struct RunReportResult {
  std::string html;        // path of report.html
  int images_shown = 0;    // thumbnails on the page
  int images_missing = 0;  // of those, placeholders (file missing or undecodable)
  double auc = 0.0;        // two classes: ROC AUC of predictions.csv's p_<class 1>; else NaN
};

// `images_root`: the directory the test cache was extracted from (CacheMeta::source_dir), which
// predictions.csv's paths are relative to; relative roots are taken from the working directory.
// `shown_dir` names the run on the page when run_dir is where its files are staged (a sweep's
// .tmp-<id>/, renamed once complete); "" shows run_dir.
// Throws Error(kIo/kCorrupt) when the run's files are missing or malformed, never for images.
RunReportResult write_run_report(const std::string& run_dir, const std::string& images_root,
                                 const std::string& shown_dir = "");

}  // namespace vggcache
