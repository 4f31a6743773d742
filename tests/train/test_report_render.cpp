// The report pages render in a real browser: headless Chromium (Debian's `chromium`) takes a
// screenshot of RUN_DIR/report.html and SWEEP_DIR/report.html, which must not be blank.
// Without chromium the tests skip locally and fail under CI=true (scripts/install-deps.sh
// installs it). VGGCACHE_REPORT_KEEP=DIR keeps the pages and screenshots there for a person.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "report_fixtures.h"

namespace vggcache {
namespace {

namespace fs = std::filesystem;
using testing::shell_quote;

#define REQUIRE_CHROMIUM()                                                              \
  if (testing::run_command("command -v chromium") != 0) {                               \
    if (testing::in_ci()) FAIL() << "chromium missing in CI (scripts/install-deps.sh)"; \
    GTEST_SKIP() << "chromium not installed";                                           \
  }

// Screenshots `html` at 1200×2000 with a fresh profile, nothing fetched and nothing kept.
void screenshot(const std::string& html, const std::string& png, const testing::TempDir& tmp) {
  const std::string profile = tmp / ("chromium-" + fs::path(png).stem().string());
  fs::create_directories(profile);
  const std::string cmd =
      "HOME=" + shell_quote(profile) + " timeout 240 chromium --headless --no-sandbox " +
      "--disable-gpu --disable-quic --no-first-run --disable-background-networking " +
      "--disable-component-update --disable-sync --hide-scrollbars --user-data-dir=" +
      shell_quote(profile) + " --screenshot=" + shell_quote(png) + " --window-size=1200,2000 " +
      shell_quote("file://" + fs::absolute(html).string());
  std::string out;
  int rc = testing::run_command(cmd, &out);
  ASSERT_EQ(rc, 0) << cmd << "\n" << out;
  ASSERT_TRUE(fs::exists(png)) << out;
}

// Not blank: the pixels vary, there are many colours (text, charts, photos), and the page's
// top and (for a long page) lower part both hold something: the whole page was laid out.
void expect_not_blank(const std::string& png, size_t min_colours, bool long_page) {
  SCOPED_TRACE(png);
  cv::Mat img = cv::imread(png, cv::IMREAD_COLOR);
  ASSERT_FALSE(img.empty());
  EXPECT_EQ(img.cols, 1200);
  EXPECT_EQ(img.rows, 2000);
  cv::Scalar mean, sd;
  cv::meanStdDev(img, mean, sd);
  EXPECT_GT(sd[0] + sd[1] + sd[2], 30.0) << "mean " << mean;
  std::set<uint32_t> colours;
  for (int y = 0; y < img.rows; y += 2)
    for (int x = 0; x < img.cols; x += 2) {
      cv::Vec3b v = img.at<cv::Vec3b>(y, x);
      colours.insert(v[0] << 16 | v[1] << 8 | v[2]);
    }
  EXPECT_GT(colours.size(), min_colours);
  for (cv::Rect band : {cv::Rect(0, 0, 1200, 600), cv::Rect(0, 1000, 1200, 600)}) {
    if (band.y > 0 && !long_page) continue;
    cv::Mat part = img(band);
    cv::meanStdDev(part, mean, sd);
    EXPECT_GT(sd[0] + sd[1] + sd[2], 15.0) << "band at y=" << band.y << " is empty";
  }
}

void keep(const std::vector<std::string>& files, const std::string& prefix) {
  const char* dir = std::getenv("VGGCACHE_REPORT_KEEP");
  if (!dir || !*dir) return;
  fs::create_directories(dir);
  for (const auto& f : files)
    fs::copy_file(f, fs::path(dir) / (prefix + fs::path(f).filename().string()),
                  fs::copy_options::overwrite_existing);
}

TEST(ReportRender, RunReportRendersInChromium) {
  REQUIRE_CHROMIUM();
  testing::TempDir tmp;
  testing::make_image_folder(tmp / "images", 2, 20, testing::carbike_dir());
  testing::ReportRun r = testing::run_for_report(tmp, 2, 20, tmp / "images");
  ASSERT_EQ(r.rc, 0) << r.output;
  const std::string html = r.run_dir + "/report.html", png = tmp / "run_report.png";
  screenshot(html, png, tmp);
  expect_not_blank(png, 200, true);
  std::vector<std::string> files = {html, png};
  for (const char* f : {"learning_curves.png", "confusion_matrix.png", "roc.png", "test_grid.png",
                        "confident_wrong.png"})
    files.push_back(r.run_dir + "/" + f);
  keep(files, "run_");
}

TEST(ReportRender, SweepReportRendersInChromium) {
  REQUIRE_CHROMIUM();
  testing::TempDir tmp;
  testing::ReportRun r = testing::run_for_report(tmp, 2, 10, tmp / "nowhere",
                                                 "--sweep 'lr=1e-3,3e-3,1e-2;hidden=8,16' --quiet");
  ASSERT_EQ(r.rc, 0) << r.output;
  const std::string html = r.run_dir + "/report.html", png = tmp / "sweep_report.png";
  ASSERT_TRUE(fs::exists(html)) << r.output;
  const std::string page = testing::read_file(html);
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  EXPECT_NE(page.find("Validation accuracy vs lr"), std::string::npos);
  EXPECT_NE(page.find("Validation accuracy vs hidden"), std::string::npos);
  for (const char* f : {"val_accuracy_vs_lr.png", "val_accuracy_vs_hidden.png"})
    EXPECT_TRUE(fs::exists(r.run_dir + "/" + f)) << f;
  screenshot(html, png, tmp);
  expect_not_blank(png, 20, false);
  keep(
      {html, png, r.run_dir + "/val_accuracy_vs_lr.png", r.run_dir + "/val_accuracy_vs_hidden.png"},
      "sweep_");
}

}  // namespace
}  // namespace vggcache
