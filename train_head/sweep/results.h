// A sweep's results: one row per finished configuration, ranked on the validation split only,
// written as SWEEP_DIR/results.csv, results.json and best.json, and a short table for the
// terminal. The test accuracy of every configuration is reported, never used to rank.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vggcache {

// The marker a configuration's directory gets last (before the rename that publishes it).
inline constexpr const char* kSweepDoneFile = "done.json";

struct SweepRow {
  size_t index = 0;  // position in the sweep's configuration list (breaks full ties)
  std::string id;
  nlohmann::json settings;             // config_settings_json()
  double val_accuracy = 0.0;           // of the selected (best-validation) epoch
  double val_balanced_accuracy = 0.0;  // of the selected epoch
  double val_loss = 0.0;
  int best_epoch = 0;
  double test_accuracy = 0.0;  // the selected head's, reported only
  double test_loss = 0.0;
  double final_test_accuracy = 0.0;  // after the last epoch
  double seconds = 0.0;  // wall time of its training; configurations trained together share it
  std::string dir;       // the configuration's directory
};

// Rows of the configurations of `sweep` (a sweep.json) finished in any of `dirs` (the first
// directory holding one wins). Error(kCorrupt) names a finished directory with unreadable files.
std::vector<SweepRow> finished_rows(const nlohmann::json& sweep,
                                    const std::vector<std::string>& dirs);

// Best first: higher validation accuracy (--select balanced: balanced accuracy), then lower
// validation loss, then configuration order. Reads nothing else, so the test set cannot influence
// the ranking.
void rank_rows(std::vector<SweepRow>* rows, const std::string& select);

// The sweep's --select, from its sweep.json ("accuracy" for sweeps made before the flag).
std::string sweep_select(const nlohmann::json& sweep);

// Writes DIR/results.csv, DIR/results.json and DIR/best.json (atomically) for ranked rows. The
// callers then render DIR/report.html from results.json (report/sweep.h).
void write_sweep_results(const std::string& dir, const nlohmann::json& sweep,
                         const std::vector<SweepRow>& ranked);

// The top `k` rows as a table showing the swept keys.
std::string top_table(const nlohmann::json& sweep, const std::vector<SweepRow>& ranked, size_t k);

// The single train_head command that reproduces a row's configuration into RUN_DIR.
std::string single_run_command(const nlohmann::json& sweep, const SweepRow& row);

}  // namespace vggcache
