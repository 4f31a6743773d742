// RUN_DIR/predictions.csv: one row per test image, from the selected head with its views'
// probabilities averaged (test-time augmentation), the same numbers as the confusion matrix.
//
// Columns: image,path,label,predicted,p_<class>... (classes in label order)
//   image      index of the image in the cache (CacheMeta::images)
//   path       relative to the cache's source_dir, '/'-separated
//   label      true class name ("" when unknown)
//   predicted  predicted class name (argmax; two classes: p_<second class> > 0.5)
//   p_<class>  probability, %.9g (round-trips a float exactly)
// Fields are quoted as RFC 4180 says (a field holding a comma, quote, CR or LF is wrapped in
// quotes, quotes doubled); lines end with LF.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/cache_meta.h"
#include "common/file_util.h"  // csv_field
#include "head/evaluate.h"

namespace vggcache {

struct PredictionRow {
  uint32_t image = 0;
  std::string path;
  int label = -1;  // -1: unknown
  int predicted = 0;
  std::vector<double> probs;  // one per class
};

struct Predictions {
  std::vector<std::string> classes;
  std::vector<PredictionRow> rows;
};

// Rows for the evaluated `images` of a cache (r.probs is images × classes in that order).
std::vector<PredictionRow> prediction_rows(const CacheMeta& meta,
                                           const std::vector<uint32_t>& images,
                                           const EvalResult& r);

// Writes atomically (temporary + rename). Throws Error(kIo) naming the file.
void write_predictions_csv(const std::string& path, const Predictions& p);

// Throws Error(kIo) when unreadable, kCorrupt (naming the file and line) when malformed.
Predictions read_predictions_csv(const std::string& path);

}  // namespace vggcache
