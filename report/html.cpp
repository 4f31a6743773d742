#include "report/html.h"

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "report/svg.h"

namespace vggcache {

std::string base64(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = static_cast<uint8_t>(bytes[i]) << 16 |
                       static_cast<uint8_t>(bytes[i + 1]) << 8 | static_cast<uint8_t>(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string data_uri(const std::string& mime, const std::string& bytes) {
  return "data:" + mime + ";base64," + base64(bytes);
}

std::string html_page(const std::string& title, const std::string& body) {
  // System fonts only: a web font would be a network reference.
  static const char* kCss = R"(
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #111; background: #fff;
       max-width: 1160px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
p.sub { color: #555; margin: 0 0 12px; }
.banner { background: #fde2d4; border: 1px solid #d55e00; padding: 8px 12px; margin: 10px 0; }
.note { color: #555; font-size: 14px; }
.headline { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.metric { border: 1px solid #ccc; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.metric b { display: block; font-size: 22px; }
.metric span { color: #555; font-size: 13px; }
.figs { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
table { border-collapse: collapse; font-size: 14px; margin: 6px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f0f0f0; }
tr.best td { background: #dff3e9; font-weight: bold; }
td.mono, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; width: 112px; border: 3px solid #ddd; padding: 3px; position: relative;
         font-size: 12px; }
figure img { width: 104px; height: 104px; image-rendering: auto; display: block; }
figure.wrong { border-color: #d55e00; background: #fff1ea; }
figure .mark { position: absolute; top: 4px; right: 4px; background: #d55e00; color: #fff;
               font-weight: bold; padding: 0 4px; font-size: 12px; }
figcaption { margin-top: 3px; line-height: 1.3; overflow-wrap: anywhere; }
)";
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
         xml_escape(title) + "</title>\n<style>" + kCss + "</style>\n</head>\n<body>\n" + body +
         "</body>\n</html>\n";
}

std::string html_table(const std::vector<std::string>& header,
                       const std::vector<std::vector<std::string>>& rows, int highlight) {
  std::string s = "<table>\n<tr>";
  for (const auto& h : header) s += "<th>" + xml_escape(h) + "</th>";
  s += "</tr>\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    s += static_cast<int>(i) == highlight ? "<tr class=\"best\">" : "<tr>";
    for (const auto& c : rows[i]) s += "<td>" + xml_escape(c) + "</td>";
    s += "</tr>\n";
  }
  return s + "</table>\n";
}

std::string html_kv_table(const std::vector<std::pair<std::string, std::string>>& rows) {
  std::string s = "<table>\n";
  for (const auto& [k, v] : rows)
    s += "<tr><th>" + xml_escape(k) + "</th><td class=\"mono\">" + xml_escape(v) + "</td></tr>\n";
  return s + "</table>\n";
}

}  // namespace vggcache
