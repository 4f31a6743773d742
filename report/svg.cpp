#include "report/svg.h"

#include <fmt/format.h>

#include <cmath>

namespace vggcache {

std::string xml_escape(const std::string& s) {
  std::string r;
  r.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        r += "&amp;";
        break;
      case '<':
        r += "&lt;";
        break;
      case '>':
        r += "&gt;";
        break;
      case '"':
        r += "&quot;";
        break;
      case '\'':
        r += "&#39;";
        break;
      default:
        r += c;
    }
  }
  return r;
}

namespace {

std::string text(double x, double y, const std::string& s, const char* anchor = "start",
                 int size = 12, const char* extra = "") {
  return fmt::format(R"(<text x="{:.1f}" y="{:.1f}" font-size="{}" text-anchor="{}"{}>{}</text>)",
                     x, y, size, anchor, extra, xml_escape(s)) +
         "\n";
}

std::string line(double x1, double y1, double x2, double y2, const std::string& stroke,
                 double width = 1, const char* extra = "") {
  return fmt::format(
             R"(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="{}" stroke-width="{}"{}/>)",
             x1, y1, x2, y2, stroke, width, extra) +
         "\n";
}

std::string open_svg(double w, double h, const std::string& title) {
  return fmt::format(
             R"(<svg viewBox="0 0 {0} {1}" width="{0}" height="{1}" role="img" aria-label="{2}" )"
             R"(font-family="DejaVu Sans, Arial, sans-serif">)",
             w, h, xml_escape(title)) +
         "\n" + fmt::format(R"(<rect width="{}" height="{}" fill="#ffffff"/>)", w, h) + "\n";
}

}  // namespace

std::string svg_line_chart(const LineChart& c) {
  const ChartLayout l = layout_chart(c);
  std::string s = open_svg(l.width, l.height, c.title);
  s += text(l.left, 22, c.title, "start", 15, R"( font-weight="bold")");
  for (size_t i = 0; i < c.series.size(); ++i) {
    const std::string col = css_color(c.series[i].color);
    const double x = l.legend_x[i], y = l.legend_y;
    s += line(x, y - 4, x + 20, y - 4, col, 2.5);
    s += text(x + 26, y, c.series[i].name);
  }
  for (const auto& t : l.yticks) {
    s += line(l.left, t.pos, l.right, t.pos, "#e4e4e4");
    s += text(l.left - 6, t.pos + 4, t.label, "end", 11);
  }
  for (const auto& t : l.xticks) {
    s += line(t.pos, l.top, t.pos, l.bottom, "#e4e4e4");
    s += text(t.pos, l.bottom + 16, t.label, "middle", 11);
  }
  s += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#444444"/>)"
                   "\n",
                   l.left, l.top, l.right - l.left, l.bottom - l.top);
  s += text((l.left + l.right) / 2, l.bottom + 36, c.x.label, "middle");
  s += fmt::format(R"(<text x="16" y="{0:.1f}" font-size="12" text-anchor="middle" )"
                   R"svg(transform="rotate(-90 16 {0:.1f})">{1}</text>)svg"
                   "\n",
                   (l.top + l.bottom) / 2, xml_escape(c.y.label));
  if (c.diagonal)
    s += line(l.px(0), l.py(0), l.px(1), l.py(1), "#999999", 1.2, R"( stroke-dasharray="5 4")");
  for (const auto& ser : c.series) {
    const std::string col = css_color(ser.color);
    if (ser.line) {
      std::string pts;
      auto flush = [&] {
        if (!pts.empty())
          s += fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="2" )"
                           R"(stroke-linejoin="round"/>)"
                           "\n",
                           pts, col);
        pts.clear();
      };
      for (size_t i = 0; i < ser.x.size(); ++i) {
        double x = l.px(ser.x[i]), y = l.py(ser.y[i]);
        if (!std::isfinite(x) || !std::isfinite(y)) {
          flush();
          continue;
        }
        pts += fmt::format("{}{:.1f},{:.1f}", pts.empty() ? "" : " ", x, y);
      }
      flush();
    }
    if (ser.markers)
      for (size_t i = 0; i < ser.x.size(); ++i) {
        double x = l.px(ser.x[i]), y = l.py(ser.y[i]);
        if (std::isfinite(x) && std::isfinite(y))
          s += fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="3.2" fill="{}"/>)"
                           "\n",
                           x, y, col);
      }
  }
  if (!c.note.empty()) s += text(l.left, l.height - 10, c.note, "start", 12);
  return s + "</svg>\n";
}

std::string svg_matrix(const MatrixChart& m) {
  const MatrixLayout l = layout_matrix(m);
  const size_t n = m.labels.size();
  std::string s = open_svg(l.width, l.height, m.title);
  s += text(10, 22, m.title, "start", 15, R"( font-weight="bold")");
  s += text(l.left + n * l.cell / 2, l.top - 30, "predicted", "middle", 12,
            R"( font-style="italic")");
  s += text(l.left - 8, l.top - 30, "true \u2193", "end", 12, R"( font-style="italic")");
  std::vector<int64_t> row_sum(n, 0), col_sum(n, 0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      row_sum[i] += m.counts[i][j];
      col_sum[j] += m.counts[i][j];
    }
  for (size_t j = 0; j < n; ++j)
    s += text(l.left + (j + 0.5) * l.cell, l.top - 10, m.labels[j], "middle", 12);
  s +=
      text(l.left + n * l.cell + 45, l.top - 10, "recall", "middle", 12, R"( font-style="italic")");
  for (size_t i = 0; i < n; ++i) {
    const double y = l.top + i * l.cell;
    s += text(l.left - 8, y + l.cell / 2 + 4, m.labels[i], "end", 12);
    for (size_t j = 0; j < n; ++j) {
      const double x = l.left + j * l.cell;
      const double share = row_sum[i] ? static_cast<double>(m.counts[i][j]) / row_sum[i] : 0.0;
      s += fmt::format(
          R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}" stroke="#888888"/>)"
          "\n",
          x, y, l.cell, l.cell, css_color(matrix_shade(share)));
      const char* ink = share > 0.5 ? R"( fill="#ffffff")" : R"( fill="#111111")";
      const int size = matrix_count_size(l);
      const double base = y + l.cell / 2 + (l.cell >= 60 ? 0 : 0.35 * size);  // centred alone
      s += text(x + l.cell / 2, base, std::to_string(m.counts[i][j]), "middle", size,
                (std::string(ink) + R"( font-weight="bold")").c_str());
      if (l.cell >= 60)
        s += text(x + l.cell / 2, y + l.cell / 2 + 17, fmt::format("{:.1f}%", 100 * share),
                  "middle", 11, ink);
    }
    const double recall =
        row_sum[i] ? static_cast<double>(m.counts[i][i]) / static_cast<double>(row_sum[i]) : 0;
    s += text(l.left + n * l.cell + 45, y + l.cell / 2 + 4, fmt::format("{:.1f}%", 100 * recall),
              "middle", 12);
  }
  const double yb = l.top + n * l.cell + 24;
  s += text(l.left - 8, yb, "precision", "end", 12, R"( font-style="italic")");
  for (size_t j = 0; j < n; ++j) {
    const double precision =
        col_sum[j] ? static_cast<double>(m.counts[j][j]) / static_cast<double>(col_sum[j]) : 0;
    s += text(l.left + (j + 0.5) * l.cell, yb, fmt::format("{:.1f}%", 100 * precision), "middle",
              12);
  }
  return s + "</svg>\n";
}

}  // namespace vggcache
