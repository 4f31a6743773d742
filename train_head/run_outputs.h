// What a run leaves behind and prints: RUN_DIR/metrics.jsonl (one object per epoch, appended as
// epochs finish), RUN_DIR/summary.json, a progress line per epoch and a final table.
#pragma once
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "common/cache_meta.h"
#include "train_head/params.h"
#include "train_head/trainer.h"

namespace vggcache {

class MetricsLog {
 public:
  // Creates (truncates) RUN_DIR/metrics.jsonl. Throws Error(kIo) naming the file.
  explicit MetricsLog(const std::string& run_dir);
  ~MetricsLog();
  void append(const EpochMetrics& m);  // one line, flushed at once

 private:
  std::string path_;
  FILE* f_ = nullptr;
};

nlohmann::json epoch_json(const EpochMetrics& m);
std::string progress_line(const EpochMetrics& m, int epochs);
std::string final_table(const TrainOutcome& out, const std::vector<std::string>& classes);

// Identity of a cache's content and settings (sha256 of its metadata without progress/provenance
// fields, 16 hex digits), distinct from the feature fingerprint that train and test share.
std::string cache_fingerprint(const CacheMeta& m);

struct RunInfo {
  TrainParams params;
  const CacheMeta* train_meta = nullptr;
  const CacheMeta* test_meta = nullptr;
  int train_images = 0, val_images = 0, test_images = 0;
  uint64_t peak_rss_anon_bytes = 0;  // largest process_memory().rss_anon seen after a step
};

// The process's resident memory from /proc/self/status (0 where unavailable). rss_anon excludes
// the cache's memory-mapped pages, which the kernel may drop at any time: it is the memory that
// must stay bounded by the model and the batch buffers, whatever the cache size.
struct ProcessMemory {
  uint64_t rss_anon = 0;  // RssAnon
  uint64_t rss_file = 0;  // RssFile (mapped cache pages among them)
};
ProcessMemory process_memory();

nlohmann::json summary_json(const RunInfo& info, const TrainOutcome& out);

// Writes `j` to path atomically (temporary + rename). Throws Error(kIo).
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace vggcache
