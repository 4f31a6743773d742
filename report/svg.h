// Inline SVG for report.html (no xmlns attribute: HTML5 does not need it, and the page then holds
// no URL at all). Positions come from report/figures.h's layouts, shared with the PNG renderer.
#pragma once
#include <string>

#include "report/figures.h"

namespace vggcache {

std::string xml_escape(const std::string& s);  // & < > " '

std::string svg_line_chart(const LineChart& c);
std::string svg_matrix(const MatrixChart& m);

}  // namespace vggcache
