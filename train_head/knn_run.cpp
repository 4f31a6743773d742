#include "train_head/knn_run.h"

#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "common/file_util.h"
#include "head/knn.h"
#include "head/linalg.h"
#include "head/predictions_csv.h"
#include "report/run.h"
#include "train_head/cache_checks.h"
#include "train_head/compact_step.h"
#include "train_head/run_outputs.h"

namespace vggcache {

using nlohmann::json;

json knn_summary_json(const TrainParams& p, const CacheMeta& train_meta, const CacheMeta& test_meta,
                      int train_images, int64_t train_vectors, int test_images, const EvalResult& r,
                      double seconds) {
  const json settings = {{"knn", p.knn},
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

int run_knn(const TrainParams& p) {
  // Two prepool-f32 caches: search the window means, scaled so that their cosines are the pooled
  // vectors' (compact_column_scale); --full-width searches the expanded pooled vectors instead.
  // Never the map itself, whose dot products are not a weighted sum of its values' products:
  // standardize = true is what makes training_vectors() choose the window means over the map.
  const VectorForm form =
      training_vectors(p.train_cache, p.test_cache, p.full_width, /*standardize=*/true);
  CacheSource train(p.train_cache, p.verify, form), test(p.test_cache, p.verify, form);
  check_training_caches(train.meta(), p.train_cache, test.meta(), p.test_cache);
  make_directories(p.out_dir);
  KnnParams kp;
  if (train.compact()) kp.column_scale = compact_column_scale(*train.compact());
  kp.k = p.knn;
  kp.vote = parse_knn_vote(p.knn_vote);
  kp.temperature = p.knn_temperature;
  const int64_t train_vectors = static_cast<int64_t>(train.images().size()) * train.crops();
  check_knn_params(kp, train_vectors);  // before reading anything
  const int classes = static_cast<int>(train.meta().classes.size());
  fmt::print(
      "train_head: k-NN, K {} ({} votes{}), {} training vectors ({} images × {} crops), "
      "{} test images × {} views, dim {}, {} threads, {}\n",
      kp.k, p.knn_vote, kp.vote == KnnVote::kWeighted ? fmt::format(", T {}", kp.temperature) : "",
      train_vectors, train.images().size(), train.crops(), test.images().size(), test.crops(),
      train.dim(), p.threads, blas_backend());
  if (train.compact())
    fmt::print(
        "train_head: k-NN on the {} window means of the {}-d pooled vectors (same cosines)\n",
        train.compact()->dim(), train.compact()->full_dim());

  const auto t0 = std::chrono::steady_clock::now();
  EvalResult r = evaluate_knn(train, train.images(), test, test.images(), classes, kp);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  write_json_file(
      p.out_dir + "/summary.json",
      knn_summary_json(p, train.meta(), test.meta(), static_cast<int>(train.images().size()),
                       train_vectors, static_cast<int>(test.images().size()), r, seconds));
  write_predictions_csv(p.out_dir + "/predictions.csv",
                        {test.meta().classes, prediction_rows(test.meta(), test.images(), r)});
  RunReportResult report = write_run_report(p.out_dir, test.meta().source_dir);
  if (report.images_missing > 0)
    spdlog::warn("report: {} of {} test images not found under {}; shown as placeholders",
                 report.images_missing, report.images_shown, test.meta().source_dir);
  std::vector<double> prec, rec;
  precision_recall(r.confusion, &prec, &rec);
  fmt::print(
      "test accuracy {:.2f}% ({} images), balanced accuracy {:.2f}%, macro F1 {:.4f}, "
      "loss {:.4f}\n",
      100 * r.accuracy, r.images, 100 * balanced_accuracy(r.confusion), macro_f1(r.confusion),
      r.loss);
  fmt::print("{:>12} {:>9} {:>9}\n", "class", "precision", "recall");
  for (size_t c = 0; c < prec.size(); ++c)
    fmt::print("{:>12} {:>8.2f}% {:>8.2f}%\n", train.meta().classes[c], 100 * prec[c],
               100 * rec[c]);
  fmt::print("train_head: k-NN search {:.2f} s; outputs in {}\n", seconds, p.out_dir);
  return 0;
}

}  // namespace vggcache
