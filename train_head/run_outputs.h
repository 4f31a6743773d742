// What a run leaves behind and prints: RUN_DIR/metrics.jsonl (one object per epoch, appended as
// epochs finish), RUN_DIR/head.bin and RUN_DIR/summary.json (write_run_outputs(), the one writer
// for a single run and every configuration of a sweep, so their files are equal byte for byte), a
// progress line per epoch and a final table. A single run adds predictions.csv and report.html.
//
// Thread-safety: the functions share no state; a MetricsLog is used from one thread at a time.
// Failure: writers throw Error(kIo) naming the file.
#pragma once
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "common/cache_meta.h"
#include "head/feature_source.h"  // Standardizer
#include "head/head_file.h"
#include "train_head/batch_schedule.h"
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

// summary.json's pieces: one evaluation (images, loss, accuracy, per_class, confusion_matrix) and
// one cache (dir, fingerprints, feature settings, images, records, crops, view).
nlohmann::json eval_json(const EvalResult& r, const std::vector<std::string>& classes);
nlohmann::json cache_json(const CacheMeta& m, const std::string& dir, int images);

nlohmann::json summary_json(const RunInfo& info, const TrainOutcome& out);

// Writes `j` to path atomically (temporary + rename). Throws Error(kIo).
void write_json_file(const std::string& path, const nlohmann::json& j);

// The head file of a finished run: `weights` (out.selected_weights, moved in by the callers: a
// full-width head is 25 MB at hidden 256), with the settings that made them. `standardizer` is
// over the full-width vectors (full_width_standardizer()), as head.bin keeps it.
HeadFile make_head_file(const TrainParams& p, const CacheMeta& train_meta,
                        const Standardizer& standardizer, const TrainOutcome& out,
                        HeadWeights weights);

// Writes RUN_DIR/head.bin, then RUN_DIR/summary.json, of a finished run (`standardizer` as for
// make_head_file). Moves out.selected_weights into head.bin's writing: they are empty afterwards.
void write_run_outputs(const std::string& run_dir, const TrainParams& p,
                       const CacheMeta& train_meta, const CacheMeta& test_meta,
                       const ImageSplit& split, int test_images, const Standardizer& standardizer,
                       TrainOutcome& out, uint64_t peak_rss_anon);

// Writes RUN_DIR/predictions.csv (one row per test image of `images`, from `selected`, the kept
// head's evaluation) and RUN_DIR/report.html (report/run.h), warning when test images named by
// the cache are missing under its source directory. `shown_dir` as write_run_report() takes it.
// Throws Error(kIo) naming the file.
void write_predictions_and_report(const std::string& run_dir, const CacheMeta& test_meta,
                                  const std::vector<uint32_t>& images, const EvalResult& selected,
                                  const std::string& shown_dir = "");

}  // namespace vggcache
