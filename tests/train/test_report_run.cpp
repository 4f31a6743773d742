// RUN_DIR/report.html and its PNG figures: present, non-empty, self-contained (no URL), the
// numbers agreeing with summary.json and predictions.csv, the AUC with an independent numpy
// computation, and a run that still succeeds (with placeholders) when the images are gone.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <regex>
#include <set>

#include "common/sha256.h"
#include "head/predictions_csv.h"
#include "report/figures.h"
#include "report/html.h"
#include "report/roc.h"
#include "report/run.h"
#include "report_fixtures.h"

namespace vggcache {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

// A figure is "not blank" when its pixels vary and it has more than a couple of colours.
void expect_figure(const std::string& path) {
  SCOPED_TRACE(path);
  ASSERT_TRUE(fs::exists(path));
  EXPECT_GT(fs::file_size(path), 2000u);
  cv::Mat img = cv::imread(path, cv::IMREAD_COLOR);
  ASSERT_FALSE(img.empty()) << "not a decodable image";
  EXPECT_GE(img.cols, 300);
  EXPECT_GE(img.rows, 150);
  cv::Scalar mean, sd;
  cv::meanStdDev(img, mean, sd);
  EXPECT_GT(sd[0] + sd[1] + sd[2], 20.0);
  std::set<uint32_t> colours;
  for (int y = 0; y < img.rows; y += 2)
    for (int x = 0; x < img.cols; x += 2) {
      cv::Vec3b v = img.at<cv::Vec3b>(y, x);
      colours.insert(v[0] << 16 | v[1] << 8 | v[2]);
    }
  EXPECT_GT(colours.size(), 8u);
}

class ReportRunTest : public ::testing::Test {
 protected:
  testing::TempDir tmp_;
};

TEST_F(ReportRunTest, WritesSelfContainedPageAndFigures) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  testing::make_image_folder(tmp_ / "images", 2, 15, carbike);
  testing::ReportRun r = testing::run_for_report(tmp_, 2, 15, tmp_ / "images");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_EQ(r.output.find("placeholders"), std::string::npos) << r.output;
  for (const char* f : {"learning_curves.png", "confusion_matrix.png", "roc.png", "test_grid.png",
                        "confident_wrong.png"})
    expect_figure(r.run_dir + "/" + f);

  const std::string html = testing::read_file(r.run_dir + "/report.html");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  // Every src= is inline data.
  EXPECT_EQ(count(html, "src=\""), count(html, "src=\"data:image/"));
  EXPECT_EQ(count(html, "<svg"), 4u);  // accuracy, loss, confusion matrix, ROC
  EXPECT_NE(html.find("Accuracy per epoch"), std::string::npos);
  EXPECT_NE(html.find("Loss per epoch"), std::string::npos);
  EXPECT_NE(html.find("ROC curve"), std::string::npos);
  EXPECT_NE(html.find("polyline"), std::string::npos);

  json s = json::parse(testing::read_file(r.run_dir + "/summary.json"));
  Predictions p = read_predictions_csv(r.run_dir + "/predictions.csv");
  int wrong = 0;
  for (const auto& row : p.rows) wrong += row.label != row.predicted;
  ASSERT_GT(wrong, 0);
  // All 30 test images in the grid, then the misclassified ones again (at most 16).
  EXPECT_EQ(count(html, "<figure"), 30u + std::min(wrong, 16));
  EXPECT_EQ(count(html, "<figure class=\"wrong\""),
            static_cast<size_t>(wrong + std::min(wrong, 16)));
  EXPECT_EQ(count(html, "data:image/jpeg;base64,"), 30u + std::min(wrong, 16));
  EXPECT_NE(html.find(fmt::format("{:.2f}%", 100 * s["selected_test"]["accuracy"].get<double>())),
            std::string::npos);
  EXPECT_NE(html.find(fmt::format("<b>{:.2f}%</b><span>test balanced accuracy</span>",
                                  100 * s["selected_test"]["balanced_accuracy"].get<double>())),
            std::string::npos);
  EXPECT_NE(html.find(fmt::format("<b>{:.4f}</b><span>test macro-F1</span>",
                                  s["selected_test"]["macro_f1"].get<double>())),
            std::string::npos);
  // Identity of what produced it.
  for (const auto& key : {s["train_cache"]["fingerprint"], s["test_cache"]["fingerprint"],
                          s["test_cache"]["feature_fingerprint"]})
    EXPECT_NE(html.find(key.get<std::string>()), std::string::npos) << key;
  EXPECT_NE(html.find("random:1"), std::string::npos);
  EXPECT_NE(html.find(sha256_file(r.run_dir + "/head.bin")), std::string::npos);
  EXPECT_NE(html.find("<th>lr</th>"), std::string::npos);
  // Confusion counts appear as the matrix's cells.
  for (auto& row : s["confusion_matrix"])
    for (auto& c : row)
      EXPECT_NE(html.find(">" + std::to_string(c.get<int64_t>()) + "</text>"), std::string::npos);
}

// A head trained on an f16 cache says in its summary and report that its features were rounded
// to halves; an f32 one that they are exact.
TEST_F(ReportRunTest, LossyCodecIsStated) {
  for (const Codec codec : {Codec::kRawF16, Codec::kRawF32}) {
    const std::string dir = tmp_ / codec_name(codec);
    testing::SyntheticSpec spec;
    spec.codec = codec;
    testing::make_synthetic_cache(dir + "/train", spec);
    spec.seed = 2;
    testing::make_synthetic_cache(dir + "/test", spec);
    std::string log;
    ASSERT_EQ(testing::run_command(testing::shell_quote(testing::bin_dir() + "/train_head") +
                                       " --train " + dir + "/train --test " + dir +
                                       "/test --out " + dir + "/run --epochs 1 --hidden 8",
                                   &log),
              0)
        << log;
    const json s = json::parse(testing::read_file(dir + "/run/summary.json"));
    const bool half = codec == Codec::kRawF16;
    for (const char* which : {"train_cache", "test_cache"}) {
      EXPECT_EQ(s.at(which).at("codec"), codec_name(codec));
      EXPECT_EQ(s.at(which).at("codec_precision").get<std::string>().rfind("lossy", 0) == 0, half)
          << s.at(which).dump();
    }
    const std::string html = testing::read_file(dir + "/run/report.html");
    EXPECT_EQ(html.find("raw-f16 (lossy: max relative error 2^-11") != std::string::npos, half);
    EXPECT_EQ(html.find("raw-f32 (exact float32)") != std::string::npos, !half);
  }
}

TEST_F(ReportRunTest, AucAgreesWithNumpy) {
  testing::ReportRun r = testing::run_for_report(tmp_, 2, 40, tmp_ / "nowhere");
  ASSERT_EQ(r.rc, 0) << r.output;
  // Pairwise Mann–Whitney count, ties ½: a different method from the report's trapezoids.
  const std::string script =
      "import csv, sys, numpy as np\n"
      "rows = list(csv.DictReader(open(sys.argv[1], newline='')))\n"
      "pos_name = [k for k in rows[0] if k.startswith('p_')][1][2:]\n"
      "y = np.array([r['label'] == pos_name for r in rows])\n"
      "s = np.array([float(r['p_' + pos_name]) for r in rows])\n"
      "a, b = s[y][:, None], s[~y][None, :]\n"
      "print(repr(((a > b).sum() + 0.5 * (a == b).sum()) / (a.size * b.size)))\n";
  testing::write_file(tmp_ / "auc.py", script);
  std::string out;
  ASSERT_EQ(testing::run_command(testing::python() + " " + testing::shell_quote(tmp_ / "auc.py") +
                                     " " + testing::shell_quote(r.run_dir + "/predictions.csv"),
                                 &out),
            0)
      << out;
  const double numpy_auc = std::stod(out);
  RunReportResult res = write_run_report(r.run_dir, tmp_ / "nowhere");
  EXPECT_NEAR(res.auc, numpy_auc, 1e-12);
  EXPECT_GT(res.auc, 0.5);
  EXPECT_LT(res.auc, 1.0);  // overlapping clusters: not a perfect ranking
  const std::string html = testing::read_file(res.html);
  EXPECT_NE(html.find(fmt::format("AUC {:.4f}", numpy_auc)), std::string::npos);
}

TEST_F(ReportRunTest, MissingImagesBecomePlaceholders) {
  testing::ReportRun r = testing::run_for_report(tmp_, 2, 10, tmp_ / "moved_away");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("placeholders"), std::string::npos) << r.output;
  const std::string html = testing::read_file(r.run_dir + "/report.html");
  EXPECT_NE(html.find("could not be read"), std::string::npos);
  EXPECT_NE(html.find("moved_away"), std::string::npos);
  expect_figure(r.run_dir + "/test_grid.png");
  RunReportResult res = write_run_report(r.run_dir, tmp_ / "moved_away");
  EXPECT_EQ(res.images_missing, res.images_shown);
  EXPECT_GE(res.images_shown, 20);
}

TEST_F(ReportRunTest, MultiClassSaysWhyThereIsNoRoc) {
  testing::make_image_folder(tmp_ / "images", 3, 8, "");
  testing::ReportRun r = testing::run_for_report(tmp_, 3, 8, tmp_ / "images");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_FALSE(fs::exists(r.run_dir + "/roc.png"));
  for (const char* f :
       {"learning_curves.png", "confusion_matrix.png", "test_grid.png", "confident_wrong.png"})
    expect_figure(r.run_dir + "/" + f);
  const std::string html = testing::read_file(r.run_dir + "/report.html");
  EXPECT_NE(html.find("two classes only"), std::string::npos);
  EXPECT_EQ(count(html, "<svg"), 3u);
  EXPECT_EQ(html.find("could not be read"), std::string::npos);
}

TEST(ReportPieces, RocOfKnownRankings) {
  RocCurve perfect = roc_curve({0.9, 0.8, 0.2, 0.1}, {true, true, false, false});
  EXPECT_DOUBLE_EQ(perfect.auc, 1.0);
  EXPECT_EQ(perfect.fpr, (std::vector<double>{0, 0, 0, 0.5, 1}));
  EXPECT_EQ(perfect.tpr, (std::vector<double>{0, 0.5, 1, 1, 1}));
  EXPECT_DOUBLE_EQ(roc_curve({0.1, 0.2, 0.8, 0.9}, {true, true, false, false}).auc, 0.0);
  // All scores tied: one diagonal step, AUC ½.
  RocCurve tied = roc_curve({0.5, 0.5, 0.5}, {true, false, true});
  EXPECT_DOUBLE_EQ(tied.auc, 0.5);
  EXPECT_EQ(tied.fpr.size(), 2u);
  // One positive above one of two negatives and tied with the other: (1 + ½) / 2.
  EXPECT_DOUBLE_EQ(roc_curve({0.6, 0.6, 0.3}, {true, false, false}).auc, 0.75);
  EXPECT_TRUE(std::isnan(roc_curve({0.4, 0.7}, {true, true}).auc));
}

TEST(ReportPieces, Base64AndTicks) {
  // RFC 4648 test vectors.
  const char* in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char* out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; ++i) EXPECT_EQ(base64(in[i]), out[i]);
  std::vector<double> t = nice_ticks(0, 1, 5);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(tick_label(t[3]), "0.6");
  EXPECT_EQ(nice_ticks(0.93, 0.975, 5).size(), 5u);  // 0.93 … 0.97 in steps of 0.01
  EXPECT_EQ(tick_label(0.6000000000000001), "0.6");
  EXPECT_EQ(tick_label(1e-5), "1e-05");
  EXPECT_EQ(tick_label(250), "250");
  LineChart c;
  c.x.integer = true;
  c.series.push_back({"a", kBlue, {1, 2, 3}, {0.5, 0.7, 0.9}});
  ChartLayout l = layout_chart(c);
  ASSERT_EQ(l.xticks.size(), 3u);  // whole epochs only
  EXPECT_EQ(l.xticks[0].label, "1");
  EXPECT_LT(l.px(1), l.px(3));
  EXPECT_GT(l.py(0.5), l.py(0.9));  // SVG y grows downwards
}

}  // namespace
}  // namespace vggcache
