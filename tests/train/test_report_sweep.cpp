// SWEEP_DIR/report.html from a hand-written results.json (the format of train_head/sweep/results.h): the
// swept settings are found, every configuration is in the table with the best marked, booleans
// plot as categories, an unfinished sweep says so, and malformed files are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "common/error.h"
#include "test_util.h"
#include "report/sweep.h"

namespace vggcache {
namespace {

using nlohmann::json;

json row(int rank, const std::string& id, double lr, bool standardize, double val, double test) {
  return {{"rank", rank},
          {"id", id},
          {"index", rank - 1},
          {"settings",
           {{"lr", lr},
            {"weight_decay", 0.0},
            {"dropout", 0.5},
            {"hidden", 256},
            {"batch", 100},
            {"epochs", 5},
            {"standardize", standardize},
            {"all_crops", false},
            {"seed", 0}}},
          {"val_accuracy", val},
          {"val_loss", 1 - val},
          {"best_epoch", 3},
          {"test_accuracy", test},
          {"test_loss", 1 - test},
          {"final_test_accuracy", test},
          {"seconds", 1.5},
          {"dir", "/sweep/" + id}};
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

TEST(SweepReport, TableAndOnePlotPerSweptSetting) {
  testing::TempDir tmp;
  json results = {
      {"sweep", "abc123"},
      {"configurations", 5},
      {"finished", 4},
      {"complete", false},
      {"selection", "val_accuracy, then val_loss (the test set is never used)"},
      {"rows",
       {row(1, "cfg-best", 1e-3, true, 0.95, 0.93), row(2, "cfg-b", 1e-4, true, 0.90, 0.91),
        row(3, "cfg-c", 1e-3, false, 0.85, 0.84), row(4, "cfg-d", 1e-2, false, 0.60, 0.62)}}};
  testing::write_file(tmp / "results.json", results.dump(2));
  SweepReportResult r = write_sweep_report(tmp.path());
  EXPECT_EQ(r.swept, (std::vector<std::string>{"lr", "standardize"}));
  EXPECT_EQ(r.configurations, 4u);
  ASSERT_EQ(r.pngs.size(), 2u);
  for (const auto& png : r.pngs) {
    cv::Mat img = cv::imread(png);
    ASSERT_FALSE(img.empty()) << png;
    cv::Scalar mean, sd;
    cv::meanStdDev(img, mean, sd);
    EXPECT_GT(sd[0], 10.0) << png;
  }
  const std::string html = testing::read_file(tmp / "report.html");
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(count(html, "<svg"), 2u);
  EXPECT_NE(html.find("Validation accuracy vs lr"), std::string::npos);
  EXPECT_NE(html.find("Validation accuracy vs standardize"), std::string::npos);
  EXPECT_NE(html.find(">false</text>"), std::string::npos);  // boolean axis as categories
  EXPECT_NE(html.find(">true</text>"), std::string::npos);
  EXPECT_NE(html.find("<th>lr</th><th>standardize</th>"), std::string::npos);  // swept columns
  EXPECT_EQ(count(html, "<tr class=\"best\"><td>1</td><td>cfg-best</td>"), 1u);
  for (const char* id : {"cfg-b", "cfg-c", "cfg-d"})
    EXPECT_NE(html.find(std::string("<td>") + id + "</td>"), std::string::npos) << id;
  EXPECT_NE(html.find("4 of 5 configurations finished"), std::string::npos);
  EXPECT_NE(html.find("<th>hidden</th><td class=\"mono\">256</td>"), std::string::npos);
  EXPECT_NE(html.find("93.00%"), std::string::npos);  // the best one's test accuracy
}

TEST(SweepReport, RefusesMalformedResults) {
  testing::TempDir tmp;
  EXPECT_THROW(write_sweep_report(tmp.path()), Error);  // no results.json
  for (const char* text : {"{", R"({"rows": 3})", R"({"rows": [{"id": "x"}]})"}) {
    testing::write_file(tmp / "results.json", text);
    try {
      write_sweep_report(tmp.path());
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kCorrupt) << e.what();
      EXPECT_NE(std::string(e.what()).find("results.json"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(std::filesystem::exists(tmp / "report.html"));
}

}  // namespace
}  // namespace vggcache
