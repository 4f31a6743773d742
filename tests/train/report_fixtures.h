// Shared by the report tests: a training run whose test cache points at a real ImageFolder, so
// the report's thumbnails have files to decode.
#pragma once
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>

#include "train_fixtures.h"

namespace vggcache::testing {

// Writes dir/class<k>/img<i>.jpg for every image make_synthetic_cache lists: carbike64 test
// photos when `carbike` is non-empty (class0 = bicycle, class1 = car; files copied, not moved),
// generated pictures otherwise (a disc per class, its colour and place varying per image).
inline void make_image_folder(const std::string& dir, int classes, int per_class,
                              const std::string& carbike) {
  namespace fs = std::filesystem;
  std::vector<std::vector<fs::path>> photos(classes);
  const char* names[] = {"bicycle", "car"};
  for (int c = 0; c < classes && c < 2 && !carbike.empty(); ++c) {
    for (const auto& e : fs::directory_iterator(fs::path(carbike) / "test" / names[c]))
      photos[c].push_back(e.path());
    std::sort(photos[c].begin(), photos[c].end());
  }
  for (int c = 0; c < classes; ++c) {
    fs::create_directories(fs::path(dir) / ("class" + std::to_string(c)));
    for (int i = 0; i < per_class; ++i) {
      const fs::path out =
          fs::path(dir) / ("class" + std::to_string(c)) / ("img" + std::to_string(i) + ".jpg");
      if (static_cast<size_t>(i) < photos[c].size()) {
        fs::copy_file(photos[c][i], out, fs::copy_options::overwrite_existing);
        continue;
      }
      cv::Mat img(64, 64, CV_8UC3, cv::Scalar(40 + 60 * c, 200 - 3 * i, 120));
      cv::circle(img, {16 + (i * 7) % 32, 20 + c * 20}, 10 + c * 4,
                 cv::Scalar(255 - 80 * c, 30 * c, 8 * i), cv::FILLED);
      cv::imwrite(out.string(), img);
    }
  }
}

struct ReportRun {
  std::string run_dir;
  std::string images;  // the test cache's source_dir
  std::string output;  // train_head's stdout + stderr
  int rc = -1;
};

// Trains on overlapping synthetic clusters (so some test images are wrong) with a test cache of
// `test_per_class` images per class, 3 views each, whose source_dir is `images`.
inline ReportRun run_for_report(const TempDir& tmp, int classes, int test_per_class,
                                const std::string& images, const std::string& extra = "") {
  SyntheticSpec tr;
  tr.classes = classes;
  tr.crops = 4;
  tr.seed = 1;
  tr.separation = 0.2f;
  make_synthetic_cache(tmp / "train", tr);
  SyntheticSpec te = tr;
  te.crops = 3;
  te.images_per_class = test_per_class;
  te.seed = 2;
  te.source_dir = images;
  make_synthetic_cache(tmp / "test", te);
  ReportRun r;
  r.run_dir = tmp / "run";
  r.images = images;
  r.rc = run_command(
      shell_quote(bin_dir() + "/train_head") + " --train " + shell_quote(tmp / "train") +
          " --test " + shell_quote(tmp / "test") + " --out " + shell_quote(r.run_dir) +
          " --epochs 6 --batch 16 --hidden 16 --lr 3e-3 --threads 2 --val-fraction 0.25 " + extra,
      &r.output);
  return r;
}

}  // namespace vggcache::testing
