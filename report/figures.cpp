#include "report/figures.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace vggcache {

std::string css_color(Rgb c) {
  return fmt::format("#{:02x}{:02x}{:02x}", c.r, c.g, c.b);
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  std::vector<double> t;
  if (!(hi > lo) || target < 1) return t;
  const double raw = (hi - lo) / target, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step; k += 1)
    t.push_back(std::abs(k) < 1e-9 ? 0.0 : k * step);
  return t;
}

std::string tick_label(double v) {
  if (v == 0) return "0";
  // {:.4g} drops float noise (0.30000000000000004 → 0.3) and switches to exponents at the ends.
  return fmt::format("{:.4g}", v);
}

namespace {

struct Range {
  double lo, hi;
};

// The axis's drawn range in axis units (log10 for log axes), padded so points are not on the
// frame, and collapsed ranges widened so there is something to draw.
Range axis_range(const Axis& a, const std::vector<double>& values) {
  if (!a.categories.empty()) return {-0.5, static_cast<double>(a.categories.size()) - 0.5};
  double lo = INFINITY, hi = -INFINITY;
  for (double v : values) {
    if (!std::isfinite(v) || (a.log && v <= 0)) continue;
    double u = a.log ? std::log10(v) : v;
    lo = std::min(lo, u);
    hi = std::max(hi, u);
  }
  if (lo > hi) lo = 0, hi = 1;
  const double pad = hi > lo ? 0.06 * (hi - lo) : (a.log || lo == 0 ? 0.5 : 0.1 * std::abs(lo));
  lo -= pad;
  hi += pad;
  if (std::isfinite(a.min)) lo = a.log ? std::log10(a.min) : a.min;
  if (std::isfinite(a.max)) hi = a.log ? std::log10(a.max) : a.max;
  if (!(hi > lo)) hi = lo + 1;
  return {lo, hi};
}

std::vector<double> axis_tick_values(const Axis& a, Range r, int target) {
  std::vector<double> v;
  if (!a.categories.empty()) {
    for (size_t k = 0; k < a.categories.size(); ++k) v.push_back(static_cast<double>(k));
  } else if (a.log) {
    for (double e = std::ceil(r.lo - 1e-9); e <= r.hi + 1e-9; e += 1) v.push_back(e);
    if (v.size() < 3) {  // a decade or two: 1-2-5 ticks, so swept values like 3e-3 get a mark
      v.clear();
      for (double e = std::floor(r.lo); e <= r.hi; e += 1)
        for (double m : {1.0, 2.0, 5.0}) {
          const double t = e + std::log10(m);
          if (t >= r.lo - 1e-9 && t <= r.hi + 1e-9) v.push_back(t);
        }
    }
    if (v.size() < 2) {  // less than a decade: linear ticks of the values themselves
      v.clear();
      for (double t : nice_ticks(std::pow(10.0, r.lo), std::pow(10.0, r.hi), target))
        if (t > 0) v.push_back(std::log10(t));
    }
  } else {
    v = nice_ticks(r.lo, r.hi, target);
    if (a.integer) {
      std::vector<double> whole;
      for (double t : v)
        if (std::abs(t - std::round(t)) < 1e-9) whole.push_back(t);
      if (whole.size() < 2)  // steps below 1: every integer in range
        for (double t = std::ceil(r.lo); t <= r.hi; t += 1) whole.push_back(t);
      std::sort(whole.begin(), whole.end());
      whole.erase(std::unique(whole.begin(), whole.end()), whole.end());
      v = whole;
    }
  }
  return v;
}

std::string axis_tick_label(const Axis& a, double v) {
  if (!a.categories.empty()) return a.categories.at(static_cast<size_t>(v));
  return tick_label(a.log ? std::pow(10.0, v) : v);
}

}  // namespace

double ChartLayout::px(double x) const {
  double u = xlog ? (x > 0 ? std::log10(x) : NAN) : x;
  return left + (u - x0) / (x1 - x0) * (right - left);
}

double ChartLayout::py(double y) const {
  double u = ylog ? (y > 0 ? std::log10(y) : NAN) : y;
  return bottom - (u - y0) / (y1 - y0) * (bottom - top);
}

ChartLayout layout_chart(const LineChart& c) {
  ChartLayout l;
  l.height = c.note.empty() ? 340 : 356;
  l.bottom = l.height - (c.note.empty() ? 54 : 70);
  l.right = l.width - 20;
  std::vector<double> xs, ys;
  for (const auto& s : c.series) {
    xs.insert(xs.end(), s.x.begin(), s.x.end());
    ys.insert(ys.end(), s.y.begin(), s.y.end());
  }
  Range xr = axis_range(c.x, xs), yr = axis_range(c.y, ys);
  l.x0 = xr.lo, l.x1 = xr.hi, l.y0 = yr.lo, l.y1 = yr.hi;
  l.xlog = c.x.log && c.x.categories.empty();
  l.ylog = c.y.log && c.y.categories.empty();
  // Ticks are placed in axis units; px()/py() take data values, so map back for log axes.
  for (double v : axis_tick_values(c.x, xr, 6))
    l.xticks.push_back(
        {l.left + (v - l.x0) / (l.x1 - l.x0) * (l.right - l.left), axis_tick_label(c.x, v)});
  for (double v : axis_tick_values(c.y, yr, 5))
    l.yticks.push_back(
        {l.bottom - (v - l.y0) / (l.y1 - l.y0) * (l.bottom - l.top), axis_tick_label(c.y, v)});
  double x = l.left;
  for (const auto& s : c.series) {
    l.legend_x.push_back(x);
    x += 34 + 7.0 * static_cast<double>(s.name.size());  // swatch, gap, text at ~7 units/char
  }
  return l;
}

MatrixLayout layout_matrix(const MatrixChart& m) {
  MatrixLayout l;
  const double n = static_cast<double>(std::max<size_t>(1, m.labels.size()));
  l.cell = n <= 4 ? 84 : std::max(30.0, 340 / n);
  l.left = 130;
  l.top = 78;
  l.width = l.left + n * l.cell + 90;
  l.height = l.top + n * l.cell + 56;
  return l;
}

int matrix_count_size(const MatrixLayout& l) {
  return l.cell >= 60 ? 15 : std::max(8, static_cast<int>(l.cell * 0.4));
}

Rgb matrix_shade(double share) {
  share = std::clamp(share, 0.0, 1.0);
  auto mix = [&](int white, int full) {
    return static_cast<uint8_t>(std::lround(white + (full - white) * share));
  };
  return {mix(255, 8), mix(255, 81), mix(255, 156)};
}

}  // namespace vggcache
