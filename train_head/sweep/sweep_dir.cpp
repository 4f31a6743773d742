#include "train_head/sweep/sweep_dir.h"

#include <fmt/core.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/file_util.h"
#include "report/sweep.h"
#include "train_head/run_outputs.h"
#include "train_head/sweep/results.h"
#include "train_head/sweep/spec.h"

namespace vggcache {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void remove_dir(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) throw Error(ErrorKind::kIo, "cannot remove " + path + ": " + ec.message());
}

bool is_done(const std::string& config_dir) {
  std::error_code ec;
  return fs::exists(config_dir + "/" + kSweepDoneFile, ec);
}

// Reads SWEEP_DIR/sweep.json if there is one and refuses another sweep's.
void check_existing_sweep(const std::string& dir, const SweepPlan& plan) {
  const std::string path = dir + "/sweep.json";
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  std::ifstream in(path);
  json stored = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (stored.is_discarded())
    throw Error(ErrorKind::kCorrupt, path + " is not valid JSON; use another --out directory");
  check_same_sweep(stored, plan.identity, dir);
}

}  // namespace

uint64_t memory_available() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    unsigned long long kb = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kb) == 1) return kb * 1024;
  }
  return 8ull << 30;
}

SweepWork open_sweep_dir(const std::string& dir, const SweepPlan& plan, const json& sweep_doc,
                         const SweepParams& sweep) {
  make_directories(dir);
  check_existing_sweep(dir, plan);
  write_file_atomically(dir + "/sweep.json", sweep_doc.dump(2) + "\n");
  SweepWork w;
  w.slice = shard_configs(plan.configs, sweep.shard_index, sweep.shard_count);
  for (size_t i : w.slice) {
    const std::string id_dir = dir + "/" + plan.configs[i].id;
    if (is_done(id_dir)) continue;
    remove_dir(dir + "/.tmp-" + plan.configs[i].id);
    remove_dir(id_dir);
    w.pending.push_back(i);
  }
  return w;
}

std::string fresh_config_dir(const std::string& dir, const std::string& id) {
  const std::string tmp = dir + "/.tmp-" + id;
  remove_dir(tmp);
  make_directories(tmp);
  return tmp;
}

void publish_config(const std::string& dir, const SweepConfig& c, double seconds) {
  const std::string tmp = dir + "/.tmp-" + c.id, final_dir = dir + "/" + c.id;
  write_json_file(tmp + "/" + kSweepDoneFile, {{"id", c.id},
                                               {"index", c.index},
                                               {"settings", config_settings_json(c.params)},
                                               {"seconds", seconds}});
  remove_dir(final_dir);
  std::error_code ec;
  fs::rename(tmp, final_dir, ec);
  if (ec)
    throw Error(ErrorKind::kIo, "cannot rename " + tmp + " to " + final_dir + ": " + ec.message());
}

void finish_sweep(const std::string& dir, const json& sweep_doc, size_t trained, double seconds) {
  std::vector<SweepRow> rows = finished_rows(sweep_doc, {dir});
  rank_rows(&rows, sweep_select(sweep_doc));
  write_sweep_results(dir, sweep_doc, rows);
  write_sweep_report(dir);  // SWEEP_DIR/report.html, from results.json
  fmt::print("{}", top_table(sweep_doc, rows, 5));
  if (!rows.empty())
    fmt::print("best (by validation accuracy): {}  val acc {:.2f}% (epoch {}), test acc {:.2f}%\n",
               rows.front().dir, 100 * rows.front().val_accuracy, rows.front().best_epoch,
               100 * rows.front().test_accuracy);
  const size_t total = sweep_doc.at("configurations").size();
  fmt::print(
      "train_head sweep: {} configurations trained in {:.1f} s; {} of {} finished; results "
      "in {}/results.csv{}\n",
      trained, seconds, rows.size(), total, dir,
      rows.size() < total ? " (merge shards with train_head --collect DIR...)" : "");
}

}  // namespace vggcache
