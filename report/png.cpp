#include "report/png.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/error.h"

namespace vggcache {

namespace {

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;

cv::Point pt(double x, double y, double scale) {
  return {static_cast<int>(std::lround(x * scale)), static_cast<int>(std::lround(y * scale))};
}

// Hershey simplex is ~22 px tall at scale 1; an SVG font of size s has a cap height of ~0.72 s.
double font_scale(double size, double scale) {
  return size * scale * 0.72 / 22.0;
}
int thickness(bool bold, double scale) {
  return std::max(1, static_cast<int>(std::lround(scale * 0.55))) + (bold ? 1 : 0);
}

void draw_line(cv::Mat& img, double x1, double y1, double x2, double y2, Rgb c, double width,
               double scale) {
  cv::line(img, pt(x1, y1, scale), pt(x2, y2, scale), bgr(c),
           std::max(1, static_cast<int>(std::lround(width * scale))), cv::LINE_AA);
}

void draw_dashed(cv::Mat& img, double x1, double y1, double x2, double y2, Rgb c, double scale) {
  const double len = std::hypot(x2 - x1, y2 - y1), dash = 5, gap = 4;
  for (double t = 0; t < len; t += dash + gap) {
    double a = t / len, b = std::min(len, t + dash) / len;
    draw_line(img, x1 + a * (x2 - x1), y1 + a * (y2 - y1), x1 + b * (x2 - x1), y1 + b * (y2 - y1),
              c, 1.2, scale);
  }
}

// Vertical text reading bottom to top, centred on (x, y).
void draw_text_vertical(cv::Mat& img, const std::string& s, double x, double y, double size,
                        double scale) {
  const std::string t = ascii_only(s);
  int base = 0;
  const double fs = font_scale(size, scale);
  const int th = thickness(false, scale);
  cv::Size ts = cv::getTextSize(t, kFont, fs, th, &base);
  cv::Mat tmp(ts.height + base + 4, ts.width + 4, CV_8UC3, cv::Scalar(255, 255, 255));
  cv::putText(tmp, t, {2, ts.height + 2}, kFont, fs, cv::Scalar(17, 17, 17), th, cv::LINE_AA);
  cv::rotate(tmp, tmp, cv::ROTATE_90_COUNTERCLOCKWISE);
  cv::Point c = pt(x, y, scale);
  cv::Rect r(c.x - tmp.cols / 2, c.y - tmp.rows / 2, tmp.cols, tmp.rows);
  r &= cv::Rect(0, 0, img.cols, img.rows);
  if (r.area() > 0) tmp(cv::Rect(0, 0, r.width, r.height)).copyTo(img(r));
}

}  // namespace

cv::Scalar bgr(Rgb c) {
  return cv::Scalar(c.b, c.g, c.r);
}

std::string ascii_only(const std::string& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      r += c >= 0x20 ? static_cast<char>(c) : ' ';
    } else if ((c & 0xC0) != 0x80) {  // one '?' per UTF-8 sequence, not per byte
      r += '?';
    }
  }
  return r;
}

void draw_text(cv::Mat& img, const std::string& s, double x, double y, const TextStyle& st,
               double scale) {
  const std::string t = ascii_only(s);
  int base = 0;
  const double fs = font_scale(st.size, scale);
  const int th = thickness(st.bold, scale);
  const cv::Size ts = cv::getTextSize(t, kFont, fs, th, &base);
  cv::Point p = pt(x, y, scale);
  if (st.anchor == 1) p.x -= ts.width / 2;
  if (st.anchor == 2) p.x -= ts.width;
  cv::putText(img, t, p, kFont, fs, bgr(st.color), th, cv::LINE_AA);
}

cv::Mat png_line_chart(const LineChart& c, double scale) {
  const ChartLayout l = layout_chart(c);
  cv::Mat img(static_cast<int>(std::lround(l.height * scale)),
              static_cast<int>(std::lround(l.width * scale)), CV_8UC3, cv::Scalar(255, 255, 255));
  const Rgb grid{228, 228, 228}, frame{68, 68, 68};
  draw_text(img, c.title, l.left, 22, {15, {17, 17, 17}, 0, true}, scale);
  for (size_t i = 0; i < c.series.size(); ++i) {
    const double x = l.legend_x[i], y = l.legend_y;
    draw_line(img, x, y - 4, x + 20, y - 4, c.series[i].color, 2.5, scale);
    draw_text(img, c.series[i].name, x + 26, y, {}, scale);
  }
  for (const auto& t : l.yticks) {
    draw_line(img, l.left, t.pos, l.right, t.pos, grid, 1, scale);
    draw_text(img, t.label, l.left - 6, t.pos + 4, {11, {17, 17, 17}, 2}, scale);
  }
  for (const auto& t : l.xticks) {
    draw_line(img, t.pos, l.top, t.pos, l.bottom, grid, 1, scale);
    draw_text(img, t.label, t.pos, l.bottom + 16, {11, {17, 17, 17}, 1}, scale);
  }
  cv::rectangle(img, pt(l.left, l.top, scale), pt(l.right, l.bottom, scale), bgr(frame), 1,
                cv::LINE_AA);
  draw_text(img, c.x.label, (l.left + l.right) / 2, l.bottom + 36, {12, {17, 17, 17}, 1}, scale);
  draw_text_vertical(img, c.y.label, 16, (l.top + l.bottom) / 2, 12, scale);
  if (c.diagonal) draw_dashed(img, l.px(0), l.py(0), l.px(1), l.py(1), {153, 153, 153}, scale);
  for (const auto& ser : c.series) {
    for (size_t i = 0; ser.line && i + 1 < ser.x.size(); ++i) {
      double xa = l.px(ser.x[i]), ya = l.py(ser.y[i]);
      double xb = l.px(ser.x[i + 1]), yb = l.py(ser.y[i + 1]);
      if (std::isfinite(xa) && std::isfinite(ya) && std::isfinite(xb) && std::isfinite(yb))
        draw_line(img, xa, ya, xb, yb, ser.color, 2, scale);
    }
    for (size_t i = 0; ser.markers && i < ser.x.size(); ++i) {
      double x = l.px(ser.x[i]), y = l.py(ser.y[i]);
      if (std::isfinite(x) && std::isfinite(y))
        cv::circle(img, pt(x, y, scale), static_cast<int>(std::lround(3.2 * scale)), bgr(ser.color),
                   cv::FILLED, cv::LINE_AA);
    }
  }
  if (!c.note.empty()) draw_text(img, c.note, l.left, l.height - 10, {}, scale);
  return img;
}

cv::Mat png_matrix(const MatrixChart& m, double scale) {
  const MatrixLayout l = layout_matrix(m);
  const size_t n = m.labels.size();
  cv::Mat img(static_cast<int>(std::lround(l.height * scale)),
              static_cast<int>(std::lround(l.width * scale)), CV_8UC3, cv::Scalar(255, 255, 255));
  const TextStyle italic{12, {60, 60, 60}, 1};
  draw_text(img, m.title, 10, 22, {15, {17, 17, 17}, 0, true}, scale);
  draw_text(img, "predicted", l.left + n * l.cell / 2, l.top - 30, italic, scale);
  draw_text(img, "true", l.left - 8, l.top - 30, {12, {60, 60, 60}, 2}, scale);
  std::vector<int64_t> row_sum(n, 0), col_sum(n, 0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      row_sum[i] += m.counts[i][j];
      col_sum[j] += m.counts[i][j];
    }
  for (size_t j = 0; j < n; ++j)
    draw_text(img, m.labels[j], l.left + (j + 0.5) * l.cell, l.top - 10, {12, {17, 17, 17}, 1},
              scale);
  draw_text(img, "recall", l.left + n * l.cell + 45, l.top - 10, italic, scale);
  for (size_t i = 0; i < n; ++i) {
    const double y = l.top + i * l.cell;
    draw_text(img, m.labels[i], l.left - 8, y + l.cell / 2 + 4, {12, {17, 17, 17}, 2}, scale);
    for (size_t j = 0; j < n; ++j) {
      const double x = l.left + j * l.cell;
      const double share = row_sum[i] ? static_cast<double>(m.counts[i][j]) / row_sum[i] : 0.0;
      cv::rectangle(img, pt(x, y, scale), pt(x + l.cell, y + l.cell, scale),
                    bgr(matrix_shade(share)), cv::FILLED);
      cv::rectangle(img, pt(x, y, scale), pt(x + l.cell, y + l.cell, scale),
                    cv::Scalar(136, 136, 136), 1);
      const Rgb ink = share > 0.5 ? Rgb{255, 255, 255} : Rgb{17, 17, 17};
      const int size = matrix_count_size(l);
      const double base = y + l.cell / 2 + (l.cell >= 60 ? 0 : 0.35 * size);  // centred alone
      draw_text(img, std::to_string(m.counts[i][j]), x + l.cell / 2, base,
                {static_cast<double>(size), ink, 1, true}, scale);
      if (l.cell >= 60)
        draw_text(img, fmt::format("{:.1f}%", 100 * share), x + l.cell / 2, y + l.cell / 2 + 17,
                  {11, ink, 1}, scale);
    }
    const double recall =
        row_sum[i] ? static_cast<double>(m.counts[i][i]) / static_cast<double>(row_sum[i]) : 0;
    draw_text(img, fmt::format("{:.1f}%", 100 * recall), l.left + n * l.cell + 45,
              y + l.cell / 2 + 4, {12, {17, 17, 17}, 1}, scale);
  }
  const double yb = l.top + n * l.cell + 24;
  draw_text(img, "precision", l.left - 8, yb, {12, {60, 60, 60}, 2}, scale);
  for (size_t j = 0; j < n; ++j) {
    const double precision =
        col_sum[j] ? static_cast<double>(m.counts[j][j]) / static_cast<double>(col_sum[j]) : 0;
    draw_text(img, fmt::format("{:.1f}%", 100 * precision), l.left + (j + 0.5) * l.cell, yb,
              {12, {17, 17, 17}, 1}, scale);
  }
  return img;
}

cv::Mat hstack(const std::vector<cv::Mat>& panels) {
  int w = 0, h = 0;
  for (const auto& p : panels) {
    w += p.cols;
    h = std::max(h, p.rows);
  }
  cv::Mat out(std::max(h, 1), std::max(w, 1), CV_8UC3, cv::Scalar(255, 255, 255));
  int x = 0;
  for (const auto& p : panels) {
    p.copyTo(out(cv::Rect(x, 0, p.cols, p.rows)));
    x += p.cols;
  }
  return out;
}

namespace {
// Debian's OpenCV (4.6) imgcodecs shares state between concurrent imencode calls: ThreadSanitizer
// reports a race inside it when a fine-tuning sweep's configurations write their reports at once.
// The figures are small, so encoding one at a time costs nothing measurable.
std::mutex encode_mutex;
}  // namespace

void write_png(const std::string& path, const cv::Mat& img) {
  std::vector<uchar> buf;
  bool ok = false;
  try {
    std::lock_guard<std::mutex> lock(encode_mutex);
    ok = cv::imencode(".png", img, buf);
  } catch (const cv::Exception& e) {
    throw Error(ErrorKind::kIo, "cannot encode " + path + ": " + e.what());
  }
  if (!ok) throw Error(ErrorKind::kIo, "cannot encode " + path);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error(ErrorKind::kIo, "cannot create " + path);
  const bool written = std::fwrite(buf.data(), 1, buf.size(), f) == buf.size();
  if (std::fclose(f) != 0 || !written) throw Error(ErrorKind::kIo, "cannot write " + path);
}

std::string encode_image(const cv::Mat& img, const std::string& ext) {
  std::vector<uchar> buf;
  std::vector<int> params;
  if (ext == ".jpg") params = {cv::IMWRITE_JPEG_QUALITY, 90};
  bool ok = false;
  try {
    std::lock_guard<std::mutex> lock(encode_mutex);
    ok = cv::imencode(ext, img, buf, params);
  } catch (const cv::Exception& e) {
    throw Error(ErrorKind::kIo, std::string("cannot encode an image: ") + e.what());
  }
  if (!ok) throw Error(ErrorKind::kIo, "cannot encode an image as " + ext);
  return std::string(buf.begin(), buf.end());
}

}  // namespace vggcache
