// The report section of a fine-tuning run started from --init-head (train_head/finetune_run.h):
// the frozen head's own training run, read from the directory that holds that head.bin (its
// metrics.jsonl and summary.json, as every train_head run and sweep configuration writes them),
// beside this run: both runs' accuracy per epoch on one scale, and the test accuracy of the frozen
// head (its run's), of the same head before fine-tuning on this run's test set, and of the tuned
// one. Also written as warm_start.png.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vggcache {

// "" unless `summary` (this run's summary.json) names an --init-head (settings.init_head).
// `epochs` are this run's metrics.jsonl lines. A frozen run directory without metrics.jsonl or
// summary.json (a head.bin copied elsewhere), or with unreadable ones, is said so on the page:
// never an error, the fine-tuned run is complete without it. Relative --init-head paths are taken
// from the working directory, as train_head took them.
std::string warm_start_section(const std::string& run_dir, const nlohmann::json& summary,
                               const std::vector<nlohmann::json>& epochs);

}  // namespace vggcache
