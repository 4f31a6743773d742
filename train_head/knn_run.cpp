#include "train_head/knn_run.h"

#include <fmt/core.h>

#include <chrono>

#include "common/file_util.h"
#include "head/knn.h"
#include "head/linalg.h"
#include "train_head/cache_checks.h"
#include "train_head/compact_step.h"
#include "train_head/run_outputs.h"

namespace vggcache {

using nlohmann::json;

json knn_summary_json(const TrainParams& p, const CacheMeta& train_meta, const CacheMeta& test_meta,
                      int train_images, int64_t train_vectors, int test_images, const EvalResult& r,
                      double seconds) {
  const json settings = {{"knn", p.knn.empty() ? 0 : p.knn.front()},
                         {"knn_vote", p.knn_vote},
                         {"knn_temperature", p.knn_temperature},
                         {"full_width", p.full_width},
                         {"threads", p.threads},
                         {"blas", blas_backend()}};
  const json test = eval_json(r, train_meta.classes);
  return {{"tool", "train_head"},
          {"tool_version", VGGCACHE_VERSION},
          {"method", "knn"},
          {"settings", settings},
          {"classes", train_meta.classes},
          {"train_cache", cache_json(train_meta, p.train_cache, train_images)},
          {"test_cache", cache_json(test_meta, p.test_cache, test_images)},
          {"val_images", 0},
          {"selection", "knn"},
          {"selected_epoch", 0},
          {"selected_test", test},
          {"final_test", test},
          {"per_class", test["per_class"]},
          {"confusion_matrix", r.confusion},
          {"train_vectors", train_vectors},
          {"train_seconds", seconds},
          {"vectors_per_second", seconds > 0 ? train_vectors / seconds : 0.0}};
}

namespace {

// One K's files in `dir`: summary.json, predictions.csv, report.html; prints its results.
void write_knn_outputs(const std::string& dir, const TrainParams& p, int k, CacheSource& train,
                       CacheSource& test, int64_t train_vectors, const EvalResult& r,
                       double seconds) {
  make_directories(dir);
  TrainParams one = p;
  one.knn = {k};
  write_json_file(
      dir + "/summary.json",
      knn_summary_json(one, train.meta(), test.meta(), static_cast<int>(train.images().size()),
                       train_vectors, static_cast<int>(test.images().size()), r, seconds));
  write_predictions_and_report(dir, test.meta(), test.images(), r);
}

}  // namespace

int run_knn(const TrainParams& p) {
  // Two prepool-f32 caches: search the window means, scaled so that their cosines are the pooled
  // vectors' (compact_column_scale); --full-width searches the expanded pooled vectors instead.
  // Never the map itself, whose dot products are not a weighted sum of its values' products:
  // standardize = true is what makes training_vectors() choose the window means over the map.
  const VectorForm form =
      training_vectors(p.train_cache, p.test_cache, p.full_width, /*standardize=*/true);
  CacheSource train(p.train_cache, p.verify, form), test(p.test_cache, p.verify, form);
  check_training_caches(train.meta(), p.train_cache, test.meta(), p.test_cache);
  KnnParams kp;
  if (train.compact()) kp.column_scale = compact_column_scale(*train.compact());
  kp.vote = parse_knn_vote(p.knn_vote);
  kp.temperature = p.knn_temperature;
  const int64_t train_vectors = static_cast<int64_t>(train.images().size()) * train.crops();
  for (int k : p.knn) {  // before reading anything
    kp.k = k;
    check_knn_params(kp, train_vectors);
  }
  make_directories(p.out_dir);
  const int classes = static_cast<int>(train.meta().classes.size());
  std::string ks;
  for (int k : p.knn) ks += (ks.empty() ? "" : ",") + std::to_string(k);
  fmt::print(
      "train_head: k-NN, K {} ({} votes{}), {} training vectors ({} images × {} crops), "
      "{} test images × {} views, dim {}, {} threads, {}\n",
      ks, p.knn_vote, kp.vote == KnnVote::kWeighted ? fmt::format(", T {}", kp.temperature) : "",
      train_vectors, train.images().size(), train.crops(), test.images().size(), test.crops(),
      train.dim(), p.threads, blas_backend());
  if (train.compact())
    fmt::print(
        "train_head: k-NN on the {} window means of the {}-d pooled vectors (same cosines)\n",
        train.compact()->dim(), train.compact()->full_dim());

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<EvalResult> rs =
      evaluate_knn_ks(train, train.images(), test, test.images(), classes, p.knn, kp);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // One K: RUN_DIR holds its files. Several: RUN_DIR/k<K>/ each, and knn_sweep.json ranks them.
  json sweep = json::array();
  fmt::print("{:>6} {:>9} {:>13} {:>9} {:>8}\n", "K", "accuracy", "balanced_acc", "macro_F1",
             "loss");
  for (size_t q = 0; q < p.knn.size(); ++q) {
    const EvalResult& r = rs[q];
    const int k = p.knn[q];
    const std::string dir = p.knn.size() == 1 ? p.out_dir : fmt::format("{}/k{}", p.out_dir, k);
    write_knn_outputs(dir, p, k, train, test, train_vectors, r, seconds);
    sweep.push_back({{"k", k},
                     {"dir", dir},
                     {"accuracy", r.accuracy},
                     {"balanced_accuracy", balanced_accuracy(r.confusion)},
                     {"macro_f1", macro_f1(r.confusion)},
                     {"loss", r.loss}});
    fmt::print("{:>6} {:>8.2f}% {:>12.2f}% {:>9.4f} {:>8.4f}\n", k, 100 * r.accuracy,
               100 * balanced_accuracy(r.confusion), macro_f1(r.confusion), r.loss);
  }
  if (p.knn.size() > 1)
    write_json_file(p.out_dir + "/knn_sweep.json", {{"knn_vote", p.knn_vote},
                                                    {"knn_temperature", p.knn_temperature},
                                                    {"seconds", seconds},
                                                    {"results", sweep}});
  fmt::print("train_head: k-NN search {:.2f} s ({} test images); outputs in {}\n", seconds,
             test.images().size(), p.out_dir);
  return 0;
}

}  // namespace vggcache
