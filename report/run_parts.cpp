#include "report/run_parts.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>

#include "common/error.h"
#include "report/svg.h"

namespace vggcache {

using nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::kIo, "cannot read " + path);
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(ErrorKind::kCorrupt, path + ": " + e.what());
  }
}

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::kIo, "cannot read " + path);
  std::vector<json> v;
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty()) continue;
    try {
      v.push_back(json::parse(line));
    } catch (const json::exception& e) {
      throw Error(ErrorKind::kCorrupt, fmt::format("{}: line {}: {}", path, n, e.what()));
    }
  }
  return v;
}

double num(const json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}

std::string value_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string percent(double v) {
  return std::isfinite(v) ? fmt::format("{:.2f}%", 100 * v) : "-";
}

std::pair<LineChart, LineChart> learning_charts(const std::vector<json>& epochs, int selected) {
  LineChart acc, loss;
  acc.title = "Accuracy per epoch";
  loss.title = "Loss per epoch";
  acc.x.label = loss.x.label = "epoch";
  acc.x.integer = loss.x.integer = true;
  acc.y.label = "accuracy";
  acc.y.max = 1.0;
  loss.y.label = "loss (BCE / cross-entropy)";
  const struct {
    const char* name;
    const char* key;
    Rgb color;
  } kinds[] = {{"train", "train", kBlue}, {"validation", "val", kOrange}, {"test", "test", kGreen}};
  for (const auto& k : kinds) {
    Series a{k.name, k.color}, l{k.name, k.color};
    bool any = false;
    for (const auto& e : epochs) {
      const double x = num(e, "epoch"), ya = num(e, (std::string(k.key) + "_accuracy").c_str());
      a.x.push_back(x);
      a.y.push_back(ya);
      l.x.push_back(x);
      l.y.push_back(num(e, (std::string(k.key) + "_loss").c_str()));
      any = any || std::isfinite(ya);
    }
    if (!any) continue;  // no validation split
    acc.series.push_back(a);
    loss.series.push_back(l);
  }
  acc.note = fmt::format("head kept: epoch {}", selected);
  loss.note = "train: running mean over the epoch's batches (dropout on)";
  return {acc, loss};
}

std::string metric_box(const std::string& value, const std::string& what) {
  return "<div class=\"metric\"><b>" + xml_escape(value) + "</b><span>" + xml_escape(what) +
         "</span></div>\n";
}

}  // namespace vggcache
