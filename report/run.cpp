#include "report/run.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "common/error.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "head/feature_check.h"
#include "head/predictions_csv.h"
#include "report/figures.h"
#include "report/html.h"
#include "report/image_grid.h"
#include "report/png.h"
#include "report/roc.h"
#include "report/run_parts.h"
#include "report/svg.h"
#include "report/warm_start.h"

namespace vggcache {

namespace {

using nlohmann::json;

constexpr size_t kGridImages = 40;   // the sample of test images shown
constexpr size_t kWrongImages = 16;  // the most confidently wrong ones shown
constexpr int kGridColumns = 8;

std::vector<std::pair<std::string, std::string>> settings_rows(const json& s) {
  std::vector<std::pair<std::string, std::string>> rows;
  const json settings = s.value("settings", json::object());  // items() does not own it
  for (const auto& [k, v] : settings.items()) rows.emplace_back(k, value_text(v));
  return rows;
}

std::string caches_table(const json& s) {
  std::vector<std::vector<std::string>> rows;
  for (const char* which : {"train_cache", "test_cache"}) {
    const json c = s.value(which, json::object());
    rows.push_back({which, value_text(c.value("dir", json(""))),
                    value_text(c.value("fingerprint", json(""))),
                    value_text(c.value("feature_fingerprint", json(""))),
                    value_text(c.value("images", json(0))), value_text(c.value("records", json(0))),
                    value_text(c.value("crops", json(0))), value_text(c.value("view", json(""))),
                    value_text(c.value("codec", json(""))) + " (" +
                        value_text(c.value("codec_precision", json("exact"))) + ")"});
  }
  return html_table({"cache", "directory", "fingerprint", "feature fingerprint", "images",
                     "records", "views", "view", "codec"},
                    rows);
}

std::vector<GridCell> grid_cells(const Predictions& p, const std::vector<size_t>& which,
                                 const std::string& root) {
  std::vector<GridCell> cells;
  for (size_t i : which) {
    const PredictionRow& r = p.rows[i];
    GridCell c = load_grid_cell(root, r.path);
    c.predicted = p.classes.at(r.predicted);
    c.actual = r.label >= 0 ? p.classes.at(r.label) : "?";
    c.probability = r.probs.at(r.predicted);
    c.wrong = r.label >= 0 && r.label != r.predicted;
    cells.push_back(std::move(c));
  }
  return cells;
}

// Rows spread evenly over the file, which lists the images class by class, so every class shows.
std::vector<size_t> even_sample(size_t n, size_t k) {
  std::vector<size_t> v;
  for (size_t i = 0; i < std::min(n, k); ++i) v.push_back(n <= k ? i : i * n / k);
  return v;
}

std::vector<size_t> confidently_wrong(const Predictions& p, size_t k) {
  std::vector<size_t> wrong;
  for (size_t i = 0; i < p.rows.size(); ++i)
    if (p.rows[i].label >= 0 && p.rows[i].label != p.rows[i].predicted) wrong.push_back(i);
  std::stable_sort(wrong.begin(), wrong.end(), [&](size_t a, size_t b) {
    return p.rows[a].probs[p.rows[a].predicted] > p.rows[b].probs[p.rows[b].predicted];
  });
  if (wrong.size() > k) wrong.resize(k);
  return wrong;
}

}  // namespace

RunReportResult write_run_report(const std::string& run_dir, const std::string& images_root,
                                 const std::string& shown_dir) {
  const std::string shown = shown_dir.empty() ? run_dir : shown_dir;
  const json s = read_json(run_dir + "/summary.json");
  // A k-NN run (train_head --knn) trains nothing: no metrics.jsonl, no epochs, no head.bin.
  const bool knn = s.value("method", "") == "knn";
  const std::vector<json> epochs =
      knn ? std::vector<json>{} : read_jsonl(run_dir + "/metrics.jsonl");
  const std::string model =
      knn ? fmt::format("k-NN, K {}", s.value("settings", json::object()).value("knn", 0))
          : fmt::format("epoch {} head", s.value("selected_epoch", 0));
  const Predictions p = read_predictions_csv(run_dir + "/predictions.csv");
  const std::vector<std::string> classes = s.value("classes", std::vector<std::string>{});
  if (classes != p.classes)
    throw Error(ErrorKind::kMismatch, run_dir + ": predictions.csv's classes differ from summary");
  RunReportResult res;
  res.html = run_dir + "/report.html";
  const int selected = s.value("selected_epoch", 0);
  const json sel = s.value("selected_test", json::object());
  const json features = s.value("train_cache", json::object()).value("features", json::object());
  const json weights = features.value("weights", json::object());
  const std::string backbone = feature_backbone(features);
  std::string body;

  // Headline.
  body += "<h1>train_head report</h1>\n<p class=\"sub\">" + xml_escape(shown) + " &middot; " +
          xml_escape(p.classes.size() == 2 ? p.classes[0] + " vs " + p.classes[1]
                                           : fmt::format("{} classes", p.classes.size())) +
          "</p>\n";
  if (weights.value("random", false))
    body += "<div class=\"banner\">Features come from <b>random</b> " + xml_escape(backbone) +
            " weights (" + xml_escape(weights.value("name", "")) +
            "), not pretrained ones: accuracies say nothing about transfer learning.</div>\n";

  // ROC first: its AUC goes in the headline.
  std::string roc_html;
  std::error_code ec;
  std::filesystem::remove(run_dir + "/roc.png", ec);  // never leave a stale one from a rerun
  res.auc = NAN;
  if (p.classes.size() == 2) {
    std::vector<double> scores;
    std::vector<bool> positive;
    for (const auto& r : p.rows)
      if (r.label >= 0) {
        scores.push_back(r.probs[1]);
        positive.push_back(r.label == 1);
      }
    RocCurve roc = roc_curve(scores, positive);
    res.auc = roc.auc;
    if (std::isfinite(roc.auc)) {
      LineChart c;
      c.title = "ROC curve (positive class: " + p.classes[1] + ")";
      c.x = {"false positive rate", 0, 1};
      c.y = {"true positive rate", 0, 1};
      c.diagonal = true;
      c.series.push_back({"test images", kBlue, roc.fpr, roc.tpr, true, false});
      c.note = fmt::format("AUC {:.4f}  ({} positive, {} negative test images)", roc.auc,
                           roc.positives, roc.negatives);
      roc_html = svg_line_chart(c);
      write_png(run_dir + "/roc.png", png_line_chart(c));
    } else {
      roc_html = "<p class=\"note\">No ROC curve: the test set lacks one of the two classes.</p>\n";
    }
  } else {
    roc_html = fmt::format(
        "<p class=\"note\">No ROC curve: it is drawn for two classes only (this run has {}).</p>\n",
        p.classes.size());
  }

  body += "<div class=\"headline\">\n";
  body += metric_box(percent(num(sel, "accuracy")), "test accuracy (" + model + ")");
  // Beside accuracy, the measures that an unbalanced test set does not flatter (absent from
  // summaries written before they existed).
  if (std::isfinite(num(sel, "balanced_accuracy")))
    body += metric_box(percent(num(sel, "balanced_accuracy")), "test balanced accuracy");
  if (std::isfinite(num(sel, "macro_f1")))
    body += metric_box(fmt::format("{:.4f}", num(sel, "macro_f1")), "test macro-F1");
  body += metric_box(fmt::format("{:.4f}", num(sel, "loss")), "test loss");
  if (std::isfinite(res.auc)) body += metric_box(fmt::format("{:.4f}", res.auc), "ROC AUC");
  const json best = s.value("best", json::object());
  if (std::isfinite(num(best, "val_accuracy")))
    body += metric_box(percent(num(best, "val_accuracy")), "validation accuracy");
  if (!knn)
    body +=
        metric_box(fmt::format("{}", selected), "epoch kept (" + s.value("selection", "") + ")");
  body += metric_box(fmt::format("{:.1f} s", num(s, "train_seconds")),
                     fmt::format("{}, {:.0f} vectors/s", knn ? "k-NN search" : "training",
                                 num(s, "vectors_per_second")));
  body += "</div>\n";

  // Learning curves.
  std::filesystem::remove(run_dir + "/learning_curves.png", ec);
  if (!knn) {
    auto [acc, loss] = learning_charts(epochs, selected);
    body += "<h2>Learning curves</h2>\n<div class=\"figs\">\n" + svg_line_chart(acc) +
            svg_line_chart(loss) + "</div>\n";
    write_png(run_dir + "/learning_curves.png",
              hstack({png_line_chart(acc), png_line_chart(loss)}));
  }
  body += warm_start_section(run_dir, s, epochs);  // "" unless fine-tuned from --init-head

  // Test results of the kept head.
  MatrixChart m;
  m.title = "Confusion matrix (test, " + model + ")";
  m.labels = p.classes;
  m.counts = s.value("confusion_matrix", std::vector<std::vector<int64_t>>{});
  if (m.counts.size() != m.labels.size())
    throw Error(ErrorKind::kCorrupt, run_dir + "/summary.json: confusion matrix size");
  std::vector<std::vector<std::string>> pc;
  for (const auto& c : s.value("per_class", json::array())) {
    int64_t support = 0;
    const size_t k = pc.size();
    for (auto v : m.counts.at(k)) support += v;
    pc.push_back({value_text(c.value("class", json(""))), percent(num(c, "precision")),
                  percent(num(c, "recall")), std::to_string(support)});
  }
  body += "<h2>Test results</h2>\n<div class=\"figs\">\n" + svg_matrix(m) + "<div>" +
          html_table({"class", "precision", "recall", "test images"}, pc) + "</div>\n" + roc_html +
          "</div>\n";
  write_png(run_dir + "/confusion_matrix.png", png_matrix(m));

  // Test images.
  const std::vector<size_t> sample = even_sample(p.rows.size(), kGridImages);
  const std::vector<size_t> wrong = confidently_wrong(p, kWrongImages);
  const std::vector<GridCell> grid = grid_cells(p, sample, images_root);
  const std::vector<GridCell> worst = grid_cells(p, wrong, images_root);
  std::vector<std::string> missing_paths;
  for (const auto* cells : {&grid, &worst})
    for (const auto& c : *cells) {
      ++res.images_shown;
      if (!c.found) {
        ++res.images_missing;
        missing_paths.push_back(c.path);
      }
    }
  int wrong_in_sample = 0;
  for (const auto& c : grid) wrong_in_sample += c.wrong;
  body += "<h2>Test images</h2>\n";
  if (res.images_missing > 0)
    body += fmt::format(
        "<div class=\"banner\">{} of {} images could not be read from the test cache's source "
        "directory <span class=\"mono\">{}</span> (first: <span class=\"mono\">{}</span>); they "
        "are shown as grey placeholders.</div>\n",
        res.images_missing, res.images_shown,
        xml_escape(images_root.empty() ? "(none)" : images_root),
        xml_escape(missing_paths.front()));
  body += fmt::format(
      "<p class=\"note\">{} of {} test images, evenly spaced through the test set ({} wrong). "
      "Caption: predicted class and its probability (views averaged), then the actual class.</p>\n",
      grid.size(), p.rows.size(), wrong_in_sample);
  body += html_image_grid(grid);
  write_png(run_dir + "/test_grid.png",
            png_image_grid(fmt::format("Test images: predicted (probability) / actual, {} of {}",
                                       grid.size(), p.rows.size()),
                           grid, kGridColumns));

  size_t wrong_total = 0;
  for (const auto& r : p.rows) wrong_total += r.label >= 0 && r.label != r.predicted;
  body += "<h2>Most confidently wrong</h2>\n";
  body += wrong_total == 0
              ? std::string("<p class=\"note\">No test image is misclassified.</p>\n")
              : fmt::format(
                    "<p class=\"note\">The {} misclassified test images with the highest "
                    "probability for the wrong class ({} misclassified in all).</p>\n",
                    worst.size(), wrong_total) +
                    html_image_grid(worst);
  write_png(run_dir + "/confident_wrong.png",
            png_image_grid(fmt::format("Most confidently wrong: {} of {} misclassified",
                                       worst.size(), wrong_total),
                           worst, kGridColumns));

  // What produced it.
  body += "<h2>Settings and provenance</h2>\n";
  std::vector<std::pair<std::string, std::string>> ident = {
      {"backbone", backbone},
      {"weights", weights.value("name", "")},
      {"weights sha256", weights.value("sha256", "")},
      {"pretrained", weights.value("random", false) ? "no (random initialisation)" : "yes"}};
  const std::string head = run_dir + "/head.bin";
  if (std::filesystem::exists(head, ec)) ident.emplace_back("head.bin sha256", sha256_file(head));
  ident.emplace_back("tool", s.value("tool", "") + " " + s.value("tool_version", ""));
  ident.emplace_back("test images root", images_root);
  body += "<div class=\"figs\"><div><h3>Training settings</h3>\n" +
          html_kv_table(settings_rows(s)) + "</div><div><h3>Weights and head</h3>\n" +
          html_kv_table(ident) + "</div></div>\n<h3>Feature caches</h3>\n" + caches_table(s);
  body +=
      std::string(knn ? "<p class=\"note\">Files: summary.json, predictions.csv; figures as "
                        "confusion_matrix.png, "
                      : "<p class=\"note\">Files: summary.json, metrics.jsonl, predictions.csv, "
                        "head.bin; figures as learning_curves.png, confusion_matrix.png, ") +
      std::string(std::isfinite(res.auc) ? "roc.png, " : "") +
      std::string(std::filesystem::exists(run_dir + "/warm_start.png", ec) ? "warm_start.png, "
                                                                           : "") +
      "test_grid.png, confident_wrong.png.</p>\n";

  write_file_atomically(res.html, html_page("train_head report: " + shown, body));
  return res;
}

}  // namespace vggcache
