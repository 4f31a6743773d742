#include "report/image_grid.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "report/html.h"
#include "report/png.h"
#include "report/svg.h"

namespace vggcache {

namespace {

const Rgb kWrong = kRed;

cv::Mat placeholder() {
  cv::Mat m(kThumbSide, kThumbSide, CV_8UC3, cv::Scalar(215, 215, 215));
  cv::line(m, {0, 0}, {kThumbSide - 1, kThumbSide - 1}, cv::Scalar(170, 170, 170), 1, cv::LINE_AA);
  cv::line(m, {kThumbSide - 1, 0}, {0, kThumbSide - 1}, cv::Scalar(170, 170, 170), 1, cv::LINE_AA);
  draw_text(m, "missing", kThumbSide / 2.0, kThumbSide / 2.0 + 5, {14, {80, 80, 80}, 1, true}, 1);
  return m;
}

std::string fit(const std::string& s, size_t chars) {
  return s.size() <= chars ? s : s.substr(0, chars - 2) + "..";
}

}  // namespace

GridCell load_grid_cell(const std::string& root, const std::string& path) {
  GridCell c;
  c.path = path;
  const std::filesystem::path file = std::filesystem::path(root) / path;
  std::error_code ec;
  cv::Mat img;
  if (!root.empty() && std::filesystem::is_regular_file(file, ec)) {
    try {
      img = cv::imread(file.string(), cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
    } catch (const cv::Exception&) {
      img.release();  // undecodable: a placeholder, like a missing file
    }
  }
  if (img.empty()) {
    c.found = false;
    c.thumb = placeholder();
    return c;
  }
  const double f = static_cast<double>(kThumbSide) / std::max(img.cols, img.rows);
  const int w = std::max(1, static_cast<int>(std::lround(img.cols * f)));
  const int h = std::max(1, static_cast<int>(std::lround(img.rows * f)));
  cv::Mat fitted;
  cv::resize(img, fitted, {w, h}, 0, 0, f < 1 ? cv::INTER_AREA : cv::INTER_CUBIC);
  c.thumb = cv::Mat(kThumbSide, kThumbSide, CV_8UC3, cv::Scalar(235, 235, 235));
  fitted.copyTo(c.thumb(cv::Rect((kThumbSide - w) / 2, (kThumbSide - h) / 2, w, h)));
  return c;
}

std::string html_image_grid(const std::vector<GridCell>& cells) {
  std::string s = "<div class=\"grid\">\n";
  for (const auto& c : cells) {
    const std::string alt = fmt::format("{}: predicted {} ({:.3f}), actual {}", c.path, c.predicted,
                                        c.probability, c.actual);
    s += fmt::format(
        "<figure{}><img src=\"{}\" alt=\"{}\" title=\"{}\">{}<figcaption><b>{}</b> {:.3f}<br>"
        "actual: {}</figcaption></figure>\n",
        c.wrong ? " class=\"wrong\"" : "", data_uri("image/jpeg", encode_image(c.thumb, ".jpg")),
        xml_escape(alt), xml_escape(alt),
        c.wrong ? "<span class=\"mark\">&#10007; wrong</span>" : "", xml_escape(c.predicted),
        c.probability, xml_escape(c.actual));
  }
  return s + "</div>\n";
}

cv::Mat png_image_grid(const std::string& title, const std::vector<GridCell>& cells, int columns) {
  // Pixel units: a cell is the thumbnail plus two caption lines, with a frame for wrong ones.
  const int pad = 8, frame = 4, cap = 40, title_h = 40;
  const int cw = kThumbSide + 2 * frame + pad, ch = kThumbSide + 2 * frame + cap + pad;
  columns = std::max(1, std::min<int>(columns, std::max<size_t>(1, cells.size())));
  const int rows = static_cast<int>((cells.size() + columns - 1) / columns);
  const int width = std::max(pad + columns * cw, 420);
  cv::Mat img(title_h + std::max(1, rows) * ch + pad, width, CV_8UC3, cv::Scalar(255, 255, 255));
  draw_text(img, title, pad, 26, {20, {17, 17, 17}, 0, true}, 1);
  if (cells.empty()) draw_text(img, "(none)", pad, title_h + 30, {16, {90, 90, 90}}, 1);
  const size_t chars = static_cast<size_t>((kThumbSide + 2 * frame) / 8);
  for (size_t i = 0; i < cells.size(); ++i) {
    const GridCell& c = cells[i];
    const int x = pad + static_cast<int>(i % columns) * cw;
    const int y = title_h + static_cast<int>(i / columns) * ch;
    const Rgb border = c.wrong ? kWrong : Rgb{221, 221, 221};
    cv::rectangle(img, {x, y}, {x + kThumbSide + 2 * frame - 1, y + kThumbSide + 2 * frame - 1},
                  bgr(border), cv::FILLED);
    c.thumb.copyTo(img(cv::Rect(x + frame, y + frame, kThumbSide, kThumbSide)));
    if (c.wrong) {
      cv::rectangle(img, {x + frame, y + frame}, {x + frame + 56, y + frame + 18}, bgr(kWrong),
                    cv::FILLED);
      draw_text(img, "WRONG", x + frame + 4, y + frame + 14, {14, {255, 255, 255}, 0, true}, 1);
    }
    const Rgb ink = c.wrong ? kWrong : Rgb{17, 17, 17};
    const int ty = y + kThumbSide + 2 * frame;
    draw_text(img, fit(fmt::format("{} {:.2f}", c.predicted, c.probability), chars), x, ty + 16,
              {15, ink, 0, true}, 1);
    draw_text(img, fit("actual: " + c.actual, chars), x, ty + 34, {14, {60, 60, 60}}, 1);
  }
  return img;
}

}  // namespace vggcache
