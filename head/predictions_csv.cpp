#include "head/predictions_csv.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/file_util.h"
#include "head/head_model.h"

namespace vggcache {

namespace {

// Splits RFC 4180 text into records of fields (quoted fields may hold commas, quotes and line
// breaks; CRLF and LF both end a record). Returns false on a stray quote or unterminated field.
bool parse_csv(const std::string& text, std::vector<std::vector<std::string>>* out,
               size_t* bad_line) {
  std::vector<std::string> rec;
  std::string field;
  bool quoted = false, was_quoted = false;
  size_t line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        if (c == '\n') ++line;
        field += c;
      }
    } else if (c == '"') {
      if (!field.empty() || was_quoted) {
        *bad_line = line;
        return false;
      }
      quoted = was_quoted = true;
    } else if (c == ',') {
      rec.push_back(std::move(field));
      field.clear();
      was_quoted = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      rec.push_back(std::move(field));
      field.clear();
      was_quoted = false;
      out->push_back(std::move(rec));
      rec.clear();
      ++line;
    } else {
      if (was_quoted) {
        *bad_line = line;
        return false;
      }
      field += c;
    }
  }
  if (quoted) {
    *bad_line = line;
    return false;
  }
  if (!field.empty() || !rec.empty() || was_quoted) {
    rec.push_back(std::move(field));
    out->push_back(std::move(rec));
  }
  return true;
}

int class_index(const std::vector<std::string>& classes, const std::string& name) {
  for (size_t k = 0; k < classes.size(); ++k)
    if (classes[k] == name) return static_cast<int>(k);
  return -2;
}

}  // namespace

std::vector<PredictionRow> prediction_rows(const CacheMeta& meta,
                                           const std::vector<uint32_t>& images,
                                           const EvalResult& r) {
  const int classes = static_cast<int>(meta.classes.size());
  if (r.probs.size() != images.size() * classes)
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("predictions: {} probabilities for {} images × {} classes",
                            r.probs.size(), images.size(), classes));
  std::vector<PredictionRow> rows(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const ImageEntry& e = meta.images.at(images[i]);
    const float* p = r.probs.data() + i * classes;
    rows[i].image = images[i];
    rows[i].path = e.path;
    rows[i].label = e.label;
    rows[i].predicted = predicted_class(p, classes);
    rows[i].probs.assign(p, p + classes);
  }
  return rows;
}

void write_predictions_csv(const std::string& path, const Predictions& p) {
  auto name = [&](int k) {
    return k >= 0 && k < static_cast<int>(p.classes.size()) ? p.classes[k] : std::string();
  };
  std::string s = "image,path,label,predicted";
  for (const auto& c : p.classes) s += "," + csv_field("p_" + c);
  s += "\n";
  for (const auto& r : p.rows) {
    s += fmt::format("{},{},{},{}", r.image, csv_field(r.path), csv_field(name(r.label)),
                     csv_field(name(r.predicted)));
    // %.9g: the shortest printf form that gives back the same float.
    for (double v : r.probs) s += fmt::format(",{:.9g}", v);
    s += "\n";
  }
  write_file_atomically(path, s);
}

Predictions read_predictions_csv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kIo, "cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::vector<std::vector<std::string>> recs;
  size_t bad = 0;
  auto corrupt = [&](size_t line, const std::string& why) {
    return Error(ErrorKind::kCorrupt, fmt::format("{}: line {}: {}", path, line, why));
  };
  if (!parse_csv(ss.str(), &recs, &bad)) throw corrupt(bad, "malformed quoting");
  if (recs.empty()) throw corrupt(1, "empty file");
  const auto& head = recs[0];
  const char* fixed[] = {"image", "path", "label", "predicted"};
  if (head.size() < 5) throw corrupt(1, "expected image,path,label,predicted,p_<class>...");
  for (int k = 0; k < 4; ++k)
    if (head[k] != fixed[k]) throw corrupt(1, fmt::format("column {} is not {}", k + 1, fixed[k]));
  Predictions p;
  for (size_t k = 4; k < head.size(); ++k) {
    if (head[k].rfind("p_", 0) != 0) throw corrupt(1, "column " + head[k] + " is not p_<class>");
    p.classes.push_back(head[k].substr(2));
  }
  // Records are numbered as lines: right for every file this tool writes (no line breaks in
  // fields); approximate otherwise.
  for (size_t i = 1; i < recs.size(); ++i) {
    const auto& f = recs[i];
    if (f.size() != head.size())
      throw corrupt(i + 1, fmt::format("{} fields, expected {}", f.size(), head.size()));
    PredictionRow r;
    char* end = nullptr;
    unsigned long long image = std::strtoull(f[0].c_str(), &end, 10);
    if (f[0].empty() || *end) throw corrupt(i + 1, "image index '" + f[0] + "'");
    r.image = static_cast<uint32_t>(image);
    r.path = f[1];
    r.label = f[2].empty() ? -1 : class_index(p.classes, f[2]);
    r.predicted = class_index(p.classes, f[3]);
    if (r.label == -2 || r.predicted < 0) throw corrupt(i + 1, "unknown class name");
    for (size_t k = 4; k < f.size(); ++k) {
      double v = std::strtod(f[k].c_str(), &end);
      if (f[k].empty() || *end) throw corrupt(i + 1, "probability '" + f[k] + "'");
      r.probs.push_back(v);
    }
    p.rows.push_back(std::move(r));
  }
  return p;
}

}  // namespace vggcache
