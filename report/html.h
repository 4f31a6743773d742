// HTML building blocks for the self-contained report pages: one file, inline CSS and SVG, images
// as data: URIs, no scripts and no URL of any kind, so the page renders offline exactly as written.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "common/file_util.h"  // write_file_atomically

namespace vggcache {

std::string base64(const std::string& bytes);
std::string data_uri(const std::string& mime, const std::string& bytes);

// A whole page around `body` (already HTML).
std::string html_page(const std::string& title, const std::string& body);

// Cells are text (escaped here). `highlight` marks one row (-1: none).
std::string html_table(const std::vector<std::string>& header,
                       const std::vector<std::vector<std::string>>& rows, int highlight = -1);
std::string html_kv_table(const std::vector<std::pair<std::string, std::string>>& rows);

}  // namespace vggcache
