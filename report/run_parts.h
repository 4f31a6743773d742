// Pieces of a run's report page shared by its sections (report/run.cpp, report/warm_start.cpp):
// reading the run's JSON files, formatting values, the learning-curve charts and headline boxes.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "report/figures.h"

namespace vggcache {

// Error(kIo) when unreadable, Error(kCorrupt) naming the file (and line) when not JSON.
nlohmann::json read_json(const std::string& path);
std::vector<nlohmann::json> read_jsonl(const std::string& path);

double num(const nlohmann::json& j, const char* key);  // NaN when absent or not a number
std::string value_text(const nlohmann::json& v);       // strings unquoted
std::string percent(double v);                         // "97.50%", "-" for NaN

// Accuracy and loss per epoch of metrics.jsonl's lines (train, validation when there is one,
// test), the accuracy chart noting the kept epoch `selected`.
std::pair<LineChart, LineChart> learning_charts(const std::vector<nlohmann::json>& epochs,
                                                int selected);

// One headline figure: `value` large, `what` under it (HTML-escaped).
std::string metric_box(const std::string& value, const std::string& what);

}  // namespace vggcache
