// `train_head --knn K ...`: k-NN classification of the test cache among the training cache's
// vectors (head/knn.h) instead of a trained head. Writes what a single run writes, minus what
// has no meaning without training: RUN_DIR/summary.json (method "knn", the k-NN settings, the
// test evaluation as selected_test and final_test), predictions.csv (p_<class> = the image's
// vote scores) and report.html with its figures; no metrics.jsonl, no head.bin.
// A sweep over K (`--knn 1,5,20`: one search for the largest K) writes those files for each K in
// RUN_DIR/k<K>/, the same as `--knn K` alone would, and RUN_DIR/knn_sweep.json: knn_vote,
// knn_temperature, seconds (the one search), results [{k, dir, accuracy, balanced_accuracy,
// macro_f1, loss}] in K order.
#pragma once
#include <nlohmann/json.hpp>

#include "head/evaluate.h"
#include "train_head/params.h"

namespace vggcache {

// Runs it; returns the exit status. Throws Error naming the problem (K larger than the training
// vectors, mismatched caches, unwritable RUN_DIR).
int run_knn(const TrainParams& p);

// summary.json of a k-NN run with one K (p.knn.front()); `seconds` is the search (reading,
// normalising, voting).
nlohmann::json knn_summary_json(const TrainParams& p, const CacheMeta& train_meta,
                                const CacheMeta& test_meta, int train_images, int64_t train_vectors,
                                int test_images, const EvalResult& r, double seconds);

}  // namespace vggcache
