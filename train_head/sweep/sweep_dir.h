// A sweep directory's life cycle, the same for sweeps of heads (runner.h) and of fine-tuning runs
// (finetune_sweep.h): sweep.json written once the directory is known to be this sweep's, each
// configuration trained in SWEEP_DIR/.tmp-<id>/ and published by a rename to <id>/ after its
// done.json, then the ranked results, report.html and the terminal's summary.
// Errors: Error(kMismatch) for another sweep's directory, kCorrupt for an unreadable sweep.json,
// kIo when a directory cannot be removed or renamed.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train_head/params.h"
#include "train_head/sweep/plan.h"

namespace vggcache {

struct SweepWork {
  std::vector<size_t> slice;    // this shard's configurations (indexes into plan.configs)
  std::vector<size_t> pending;  // those of the slice not finished yet
};

// Refuses `dir` when it holds another sweep, writes `sweep_doc` as its sweep.json, and lists the
// work of shard `sweep.shard_index` of `sweep.shard_count`; what an earlier run left unfinished
// (.tmp-<id>/, or <id>/ without done.json) is removed, to be trained from the start.
SweepWork open_sweep_dir(const std::string& dir, const SweepPlan& plan,
                         const nlohmann::json& sweep_doc, const SweepParams& sweep);

// SWEEP_DIR/.tmp-<id>, emptied and created.
std::string fresh_config_dir(const std::string& dir, const std::string& id);

// Writes done.json into the configuration's .tmp-<id>/ and renames it to <id>/, so <id>/ exists
// only complete.
void publish_config(const std::string& dir, const SweepConfig& c, double seconds);

// Ranks the finished configurations, writes results.csv/.json, best.json and report.html, and
// prints the top 5 and how many were trained (`trained`, in `seconds`) and finished.
void finish_sweep(const std::string& dir, const nlohmann::json& sweep_doc, size_t trained,
                  double seconds);

// MemAvailable from /proc/meminfo; 8 GiB where it cannot be read.
uint64_t memory_available();

}  // namespace vggcache
