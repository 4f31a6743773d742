// The report's figures as plain data, drawn twice from the same description: as inline SVG for
// report.html (report/svg.h) and as PNG files with OpenCV (report/png.h). The layout (plot area,
// ticks, legend) is computed here once, so both renderings put everything in the same place.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace vggcache {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};
std::string css_color(Rgb c);  // "#rrggbb"

// Line colours (colour-blind-safe Okabe–Ito subset): train, validation, test, and others.
inline constexpr Rgb kBlue{0, 114, 178}, kOrange{230, 159, 0}, kGreen{0, 158, 115},
    kRed{213, 94, 0}, kGrey{120, 120, 120}, kPurple{204, 121, 167};

struct Series {
  std::string name;
  Rgb color;
  std::vector<double> x, y;  // same length; NaN y values are gaps
  bool line = true;          // join consecutive points
  bool markers = true;       // a dot at each point
};

struct Axis {
  std::string label;
  double min = std::numeric_limits<double>::quiet_NaN();  // NaN: from the data
  double max = std::numeric_limits<double>::quiet_NaN();
  bool log = false;                     // log10 scale (all values must be > 0)
  bool integer = false;                 // ticks at whole numbers only (epochs)
  std::vector<std::string> categories;  // non-empty: value k is drawn as categories[k]
};

struct LineChart {
  std::string title;
  Axis x, y;
  std::vector<Series> series;
  bool diagonal = false;  // dashed y = x (the ROC's chance line)
  std::string note;       // one line under the plot (e.g. "AUC 0.973")
};

// Counts with a colour per cell (share of the row) and, in the margins, each row's recall and
// each column's precision.
struct MatrixChart {
  std::string title;
  std::vector<std::string> labels;           // classes, in label order
  std::vector<std::vector<int64_t>> counts;  // [true][predicted]
};

// Everything both renderers need, in figure units (SVG user units; the PNG scales them).
struct Tick {
  double pos;  // pixel along the axis
  std::string label;
};
struct ChartLayout {
  double width = 520, height = 340;
  double left = 64, right = 500, top = 52, bottom = 286;  // plot area
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;                  // data range (log10 when log)
  bool xlog = false, ylog = false;
  std::vector<Tick> xticks, yticks;
  double legend_y = 40;
  std::vector<double> legend_x;  // left end of each series' swatch
  double px(double x) const;     // data → figure coordinates; NaN stays NaN
  double py(double y) const;
};
ChartLayout layout_chart(const LineChart& c);

// "Nice" tick values (1, 2, 5 × 10^k steps) covering [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target);
std::string tick_label(double v);  // shortest readable form: 0.5, 1e-05, 200

struct MatrixLayout {
  double width = 0, height = 0;
  double left = 0, top = 0, cell = 0;  // cell grid origin and side
};
MatrixLayout layout_matrix(const MatrixChart& m);
// Font size of the counts: smaller in the small cells of many-class matrices.
int matrix_count_size(const MatrixLayout& l);
// Cell shade from white (0) to blue (1).
Rgb matrix_shade(double share);

}  // namespace vggcache
