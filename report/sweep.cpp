#include "report/sweep.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "common/file_util.h"
#include "report/figures.h"
#include "report/html.h"
#include "report/png.h"
#include "report/svg.h"

namespace vggcache {

namespace {

using nlohmann::json;

std::string setting_text(const json& v) {
  if (v.is_number_float()) return fmt::format("{:g}", v.get<double>());
  return v.is_string() ? v.get<std::string>() : v.dump();
}

double num(const json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}

std::string percent(double v) {
  return std::isfinite(v) ? fmt::format("{:.2f}%", 100 * v) : "-";
}

std::string file_safe(const std::string& s) {
  std::string r;
  for (char c : s) r += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return r;
}

// Validation accuracy of every configuration against one setting, and the best at each value.
LineChart setting_chart(const std::string& key, const json& rows, size_t swept_count) {
  LineChart c;
  c.title = "Validation accuracy vs " + key;
  c.x.label = key;
  c.y.label = "validation accuracy";
  c.y.max = 1.0;
  std::vector<json> values;
  bool numeric = true, boolean = true;
  for (const auto& r : rows) {
    const json v = r.at("settings").value(key, json());
    numeric = numeric && v.is_number();
    boolean = boolean && v.is_boolean();
    values.push_back(v);
  }
  std::vector<double> xs;
  if (numeric) {
    double lo = INFINITY, hi = -INFINITY;
    for (const auto& v : values) {
      lo = std::min(lo, v.get<double>());
      hi = std::max(hi, v.get<double>());
    }
    // Rates and decays are swept over decades: a log axis spaces them evenly.
    c.x.log = lo > 0 && hi / lo >= 10;
    for (const auto& v : values) xs.push_back(v.get<double>());
    c.x.integer = std::all_of(values.begin(), values.end(),
                              [](const json& v) { return v.is_number_integer(); });
  } else {
    std::set<std::string> names;
    for (const auto& v : values)
      names.insert(boolean ? (v.get<bool>() ? "true" : "false") : setting_text(v));
    if (boolean) names = {"false", "true"};
    c.x.categories.assign(names.begin(), names.end());
    for (const auto& v : values) {
      const std::string t = boolean ? (v.get<bool>() ? "true" : "false") : setting_text(v);
      xs.push_back(static_cast<double>(std::find(c.x.categories.begin(), c.x.categories.end(), t) -
                                       c.x.categories.begin()));
    }
  }
  Series all{"configuration", kBlue}, best{"best at each value", kOrange};
  all.line = false;
  best.markers = false;
  std::map<double, double> top;
  for (size_t i = 0; i < rows.size(); ++i) {
    const double y = num(rows[i], "val_accuracy");
    all.x.push_back(xs[i]);
    all.y.push_back(y);
    auto it = top.find(xs[i]);
    if (it == top.end() || y > it->second) top[xs[i]] = y;
  }
  for (const auto& [x, y] : top) {
    best.x.push_back(x);
    best.y.push_back(y);
  }
  // The line first, so the configurations' dots stay visible on top of it.
  if (top.size() > 1 && top.size() < rows.size()) c.series.push_back(best);
  c.series.push_back(all);
  c.note = fmt::format("{} configurations{}", rows.size(),
                       swept_count > 1 ? "; points at one value differ in other settings" : "");
  return c;
}

std::string metric_box(const std::string& value, const std::string& what) {
  return "<div class=\"metric\"><b>" + xml_escape(value) + "</b><span>" + xml_escape(what) +
         "</span></div>\n";
}

}  // namespace

SweepReportResult write_sweep_report(const std::string& sweep_dir) {
  const std::string path = sweep_dir + "/results.json";
  json results;
  {
    std::ifstream in(path);
    if (!in) throw Error(ErrorKind::kIo, "cannot read " + path);
    try {
      results = json::parse(in);
    } catch (const json::exception& e) {
      throw Error(ErrorKind::kCorrupt, path + ": " + e.what());
    }
  }
  const json rows = results.value("rows", json::array());
  if (!rows.is_array()) throw Error(ErrorKind::kCorrupt, path + ": \"rows\" is not a list");
  for (const auto& r : rows)
    if (!r.is_object() || !r.contains("settings") || !r["settings"].is_object() ||
        !r.contains("val_accuracy"))
      throw Error(ErrorKind::kCorrupt, path + ": a row lacks settings or val_accuracy");

  SweepReportResult res;
  res.html = sweep_dir + "/report.html";
  res.configurations = rows.size();
  // Swept = takes more than one value; the rest are the sweep's fixed settings.
  std::vector<std::string> keys;
  if (!rows.empty())
    for (const auto& [k, v] : rows[0]["settings"].items()) keys.push_back(k);
  std::vector<std::pair<std::string, std::string>> fixed;
  for (const auto& k : keys) {
    std::set<std::string> distinct;
    for (const auto& r : rows) distinct.insert(r["settings"].value(k, json()).dump());
    if (distinct.size() > 1)
      res.swept.push_back(k);
    else
      fixed.emplace_back(k, setting_text(rows[0]["settings"][k]));
  }

  std::string body =
      "<h1>train_head sweep report</h1>\n<p class=\"sub\">" + xml_escape(sweep_dir) + "</p>\n";
  const size_t total = results.value("configurations", rows.size());
  if (rows.size() < total)
    body += fmt::format(
        "<div class=\"banner\">{} of {} configurations finished (resume the sweep, or merge its "
        "shards with <span class=\"mono\">train_head --collect</span>).</div>\n",
        rows.size(), total);
  body += "<div class=\"headline\">\n" +
          metric_box(fmt::format("{} / {}", rows.size(), total), "configurations finished");
  if (!rows.empty()) {
    const json& b = rows[0];
    body += metric_box(percent(num(b, "val_accuracy")),
                       "best validation accuracy (" + b.value("id", std::string("?")) + ")");
    body += metric_box(percent(num(b, "test_accuracy")), "its test accuracy");
    body += metric_box(fmt::format("{}", b.value("best_epoch", 0)), "its best epoch");
  }
  body += "</div>\n<p class=\"note\">Ranked by " +
          xml_escape(results.value("selection", std::string("validation accuracy"))) +
          ". Test accuracy is reported, never used to choose.</p>\n";

  body += "<h2>Validation accuracy against each swept setting</h2>\n";
  if (res.swept.empty())
    body += "<p class=\"note\">No setting varies between configurations.</p>\n";
  body += "<div class=\"figs\">\n";
  for (const auto& k : res.swept) {
    LineChart c = setting_chart(k, rows, res.swept.size());
    body += svg_line_chart(c);
    res.pngs.push_back(sweep_dir + "/val_accuracy_vs_" + file_safe(k) + ".png");
    write_png(res.pngs.back(), png_line_chart(c));
  }
  body += "</div>\n";

  body += "<h2>All configurations</h2>\n";
  std::vector<std::string> header = {"rank", "id"};
  header.insert(header.end(), res.swept.begin(), res.swept.end());
  for (const char* h : {"val accuracy", "val loss", "best epoch", "test accuracy",
                        "final test accuracy", "seconds", "directory"})
    header.push_back(h);
  std::vector<std::vector<std::string>> table;
  for (size_t i = 0; i < rows.size(); ++i) {
    const json& r = rows[i];
    std::vector<std::string> row = {fmt::format("{}", r.value("rank", i + 1)),
                                    r.value("id", std::string())};
    for (const auto& k : res.swept) row.push_back(setting_text(r["settings"].value(k, json())));
    row.push_back(percent(num(r, "val_accuracy")));
    row.push_back(std::isfinite(num(r, "val_loss")) ? fmt::format("{:.4f}", num(r, "val_loss"))
                                                    : "-");
    row.push_back(fmt::format("{}", r.value("best_epoch", 0)));
    row.push_back(percent(num(r, "test_accuracy")));
    row.push_back(percent(num(r, "final_test_accuracy")));
    row.push_back(std::isfinite(num(r, "seconds")) ? fmt::format("{:.1f}", num(r, "seconds"))
                                                   : "-");
    row.push_back(r.value("dir", std::string()));
    table.push_back(std::move(row));
  }
  body += html_table(header, table, rows.empty() ? -1 : 0);
  if (!fixed.empty())
    body += "<h3>Settings shared by every configuration</h3>\n" + html_kv_table(fixed);
  if (results.contains("sweep"))
    body += "<p class=\"note\">Sweep identity: <span class=\"mono\">" +
            xml_escape(setting_text(results["sweep"])) + "</span></p>\n";

  write_file_atomically(res.html, html_page("train_head sweep report: " + sweep_dir, body));
  return res;
}

}  // namespace vggcache
