#include "train_head/run_outputs.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <tbb/global_control.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/file_util.h"
#include "head/feature_check.h"
#include "head/linalg.h"
#include "head/predictions_csv.h"
#include "report/run.h"

namespace vggcache {

using nlohmann::json;

MetricsLog::MetricsLog(const std::string& run_dir) : path_(run_dir + "/metrics.jsonl") {
  f_ = std::fopen(path_.c_str(), "w");
  if (!f_) throw Error(ErrorKind::kIo, "cannot create " + path_);
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::append(const EpochMetrics& m) {
  std::string line = epoch_json(m).dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    throw Error(ErrorKind::kIo, "cannot write " + path_);
}

json epoch_json(const EpochMetrics& m) {
  return {{"epoch", m.epoch},
          {"train_loss", m.train_loss},
          {"train_accuracy", m.train_accuracy},
          {"val_loss", m.has_val ? json(m.val_loss) : json(nullptr)},
          {"val_accuracy", m.has_val ? json(m.val_accuracy) : json(nullptr)},
          {"val_balanced_accuracy", m.has_val ? json(m.val_balanced_accuracy) : json(nullptr)},
          {"test_loss", m.test_loss},
          {"test_accuracy", m.test_accuracy},
          {"seconds", m.seconds},
          {"train_seconds", m.train_seconds},
          {"vectors_per_second", m.train_seconds > 0 ? m.vectors / m.train_seconds : 0.0}};
}

std::string progress_line(const EpochMetrics& m, int epochs) {
  std::string val = m.has_val ? fmt::format("  val acc {:6.2f}%", 100 * m.val_accuracy) : "";
  return fmt::format(
      "epoch {:>3}/{}  train loss {:.4f} acc {:6.2f}%{}  test loss {:.4f} acc {:6.2f}%  "
      "{:.1f} s  {:.0f} vectors/s",
      m.epoch, epochs, m.train_loss, 100 * m.train_accuracy, val, m.test_loss,
      100 * m.test_accuracy, m.seconds, m.train_seconds > 0 ? m.vectors / m.train_seconds : 0.0);
}

std::string final_table(const TrainOutcome& out, const std::vector<std::string>& classes) {
  std::string s =
      fmt::format("{:>5} {:>10} {:>9} {:>9} {:>10} {:>9} {:>8}\n", "epoch", "train_loss",
                  "train_acc", "val_acc", "test_loss", "test_acc", "seconds");
  for (const auto& m : out.epochs) {
    s += fmt::format(
        "{:>5} {:>10.4f} {:>8.2f}% {:>9} {:>10.4f} {:>8.2f}% {:>8.1f}{}\n", m.epoch, m.train_loss,
        100 * m.train_accuracy, m.has_val ? fmt::format("{:.2f}%", 100 * m.val_accuracy) : "-",
        m.test_loss, 100 * m.test_accuracy, m.seconds,
        m.epoch == out.selected_epoch && out.selection != "final" ? "  <- selected" : "");
  }
  std::vector<double> prec, rec;
  precision_recall(out.selected_test.confusion, &prec, &rec);
  s += fmt::format(
      "test, epoch {} head: accuracy {:.2f}%, balanced accuracy {:.2f}%, macro F1 "
      "{:.4f}\n",
      out.selected_epoch, 100 * out.selected_test.accuracy,
      100 * balanced_accuracy(out.selected_test.confusion), macro_f1(out.selected_test.confusion));
  s += fmt::format("test, epoch {} head: {:>12} {:>9} {:>9}\n", out.selected_epoch, "class",
                   "precision", "recall");
  for (size_t k = 0; k < classes.size() && k < prec.size(); ++k)
    s += fmt::format("{:>31} {:>8.2f}% {:>8.2f}%\n", classes[k], 100 * prec[k], 100 * rec[k]);
  return s;
}

ProcessMemory process_memory() {
  ProcessMemory m;
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    unsigned long long kb = 0;
    if (std::sscanf(line.c_str(), "RssAnon: %llu kB", &kb) == 1) m.rss_anon = kb * 1024;
    if (std::sscanf(line.c_str(), "RssFile: %llu kB", &kb) == 1) m.rss_file = kb * 1024;
  }
  return m;
}

json eval_json(const EvalResult& r, const std::vector<std::string>& classes) {
  std::vector<double> prec, rec;
  precision_recall(r.confusion, &prec, &rec);
  json per_class = json::array();
  for (size_t k = 0; k < classes.size() && k < prec.size(); ++k)
    per_class.push_back({{"class", classes[k]}, {"precision", prec[k]}, {"recall", rec[k]}});
  return {{"images", r.images},
          {"loss", r.loss},
          {"accuracy", r.accuracy},
          {"balanced_accuracy", balanced_accuracy(r.confusion)},
          {"macro_f1", macro_f1(r.confusion)},
          {"per_class", per_class},
          {"confusion_matrix", r.confusion}};
}

json cache_json(const CacheMeta& m, const std::string& dir, int images) {
  return {{"dir", dir},
          {"fingerprint", m.fingerprint()},
          {"feature_fingerprint", m.feature_fingerprint()},
          {"features", feature_settings(m)},
          // The f16 codecs are lossy: a head trained on them says so in its summary and report.
          {"codec", codec_name(m.codec)},
          {"codec_precision", codec_precision_note(m.codec)},
          {"images", images},
          {"records", m.records},
          {"crops", m.preprocess.crops},
          {"view", m.preprocess.eval ? "eval" : "train"}};
}

json summary_json(const RunInfo& info, const TrainOutcome& out) {
  const TrainParams& p = info.params;
  const auto& classes = info.train_meta->classes;
  json settings = {{"epochs", p.epochs},
                   {"batch", p.batch},
                   {"lr", p.lr},
                   {"hidden", p.hidden},
                   {"dropout", p.dropout},
                   {"weight_decay", p.weight_decay},
                   {"seed", p.seed},
                   {"threads", p.threads},
                   {"val_fraction", p.val_fraction},
                   {"standardize", p.standardize},
                   {"all_crops", p.all_crops},
                   {"class_weight", p.class_weight},
                   {"sampler", p.sampler},
                   {"select", p.select},
                   {"optimizer", p.optimizer},
                   {"blas", blas_backend()}};
  if (p.optimizer == "lbfgs") {
    settings["l2"] = p.l2;
    settings["max_iter"] = p.max_iter;
    settings["tol"] = p.tol;
  } else {
    settings["order"] = p.order;  // the read order is a different sampling: part of the result
    if (p.order == "blocks") {
      settings["block_records"] = p.block_records;
      settings["block_window"] = p.block_window;
    }
  }
  const EpochMetrics& last = out.epochs.back();
  const EpochMetrics& sel = out.epochs.at(out.selected_epoch - 1);
  json summary = {
      {"tool", "train_head"},
      {"tool_version", VGGCACHE_VERSION},
      {"settings", settings},
      {"classes", classes},
      {"train_cache", cache_json(*info.train_meta, p.train_cache, info.train_images)},
      {"test_cache", cache_json(*info.test_meta, p.test_cache, info.test_images)},
      {"val_images", info.val_images},
      {"final", epoch_json(last)},
      {"best", epoch_json(sel)},
      {"selection", out.selection},
      {"selected_epoch", out.selected_epoch},
      {"class_weights", out.class_weights.empty() ? json(nullptr) : json(out.class_weights)},
      {"final_test", eval_json(out.final_test, classes)},
      {"selected_test", eval_json(out.selected_test, classes)},
      {"per_class", eval_json(out.selected_test, classes)["per_class"]},
      {"confusion_matrix", out.selected_test.confusion},
      {"train_seconds", out.train_seconds},
      {"peak_rss_anon_bytes", info.peak_rss_anon_bytes},
      {"train_vectors", out.train_vectors},
      {"vectors_per_second", out.train_seconds > 0 ? out.train_vectors / out.train_seconds : 0.0}};
  if (!out.solver.is_null()) summary["solver"] = out.solver;
  return summary;
}

void write_json_file(const std::string& path, const json& j) {
  write_file_atomically(path, j.dump(2) + "\n");
}

HeadFile make_head_file(const TrainParams& p, const CacheMeta& train_meta,
                        const Standardizer& standardizer, const TrainOutcome& out,
                        HeadWeights weights) {
  HeadFile h{std::move(weights),
             train_meta.classes,
             standardizer,
             p.dropout,
             feature_settings(train_meta),
             {{"selected_epoch", out.selected_epoch},
              {"selection", out.selection},
              {"train_cache", p.train_cache},
              {"epochs", p.epochs},
              {"lr", p.lr},
              {"batch", p.batch},
              {"seed", p.seed}}};
  // Only for L-BFGS, so that Adam heads keep the bytes they had before it existed.
  if (p.optimizer == "lbfgs") {
    h.training["optimizer"] = p.optimizer;
    h.training["l2"] = p.l2;
    h.training["solver"] = out.solver;
  }
  return h;
}

void write_run_outputs(const std::string& run_dir, const TrainParams& p,
                       const CacheMeta& train_meta, const CacheMeta& test_meta,
                       const ImageSplit& split, int test_images, const Standardizer& standardizer,
                       TrainOutcome& out, uint64_t peak_rss_anon) {
  save_head(run_dir + "/head.bin",
            make_head_file(p, train_meta, standardizer, out, std::move(out.selected_weights)));
  RunInfo info{p,
               &train_meta,
               &test_meta,
               static_cast<int>(split.train.size()),
               static_cast<int>(split.val.size()),
               test_images,
               peak_rss_anon};
  write_json_file(run_dir + "/summary.json", summary_json(info, out));
}

void write_predictions_and_report(const std::string& run_dir, const CacheMeta& test_meta,
                                  const std::vector<uint32_t>& images, const EvalResult& selected,
                                  const std::string& shown_dir) {
  write_predictions_csv(run_dir + "/predictions.csv",
                        {test_meta.classes, prediction_rows(test_meta, images, selected)});
  RunReportResult report = write_run_report(run_dir, test_meta.source_dir, shown_dir);
  if (report.images_missing > 0)
    spdlog::warn("report: {} of {} test images not found under {}; shown as placeholders",
                 report.images_missing, report.images_shown, test_meta.source_dir);
}

}  // namespace vggcache
