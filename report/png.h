// PNG renderings of the report's figures with OpenCV's drawing functions: the same layouts as
// the SVG (report/figures.h) scaled up, with Hershey text (ASCII only; other characters become
// '?'). Simple, but legible in an image viewer without a browser.
#pragma once
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "report/figures.h"

namespace vggcache {

inline constexpr double kPngScale = 2.0;  // pixels per figure unit

cv::Mat png_line_chart(const LineChart& c, double scale = kPngScale);
cv::Mat png_matrix(const MatrixChart& m, double scale = kPngScale);

// Side by side, tops aligned, on white.
cv::Mat hstack(const std::vector<cv::Mat>& panels);

// Text drawing shared with the image grids. `size` is the SVG font size in figure units; anchor
// 0 = start, 1 = middle, 2 = end; y is the baseline.
struct TextStyle {
  double size = 12;
  Rgb color{17, 17, 17};
  int anchor = 0;
  bool bold = false;
};
void draw_text(cv::Mat& img, const std::string& s, double x, double y, const TextStyle& st,
               double scale);
std::string ascii_only(const std::string& s);
cv::Scalar bgr(Rgb c);

// Throws Error(kIo) naming the file.
void write_png(const std::string& path, const cv::Mat& img);
// In-memory encodings for data: URIs (".png" or ".jpg"). Throws Error(kIo) on failure.
std::string encode_image(const cv::Mat& img, const std::string& ext);

}  // namespace vggcache
