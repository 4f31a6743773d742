#include "report/warm_start.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "common/error.h"
#include "report/figures.h"
#include "report/png.h"
#include "report/run_parts.h"
#include "report/svg.h"

namespace vggcache {

namespace fs = std::filesystem;
using nlohmann::json;

std::string warm_start_section(const std::string& run_dir, const json& summary,
                               const std::vector<json>& epochs) {
  std::error_code ec;
  fs::remove(run_dir + "/warm_start.png", ec);  // never leave a stale one from a rerun
  const json settings = summary.value("settings", json::object());
  if (!settings.contains("init_head") || !settings["init_head"].is_string()) return "";
  const std::string init_head = settings["init_head"].get<std::string>();
  std::string frozen_dir = fs::path(init_head).parent_path().string();
  if (frozen_dir.empty()) frozen_dir = ".";

  // The frozen run's files, each optional: what is missing is named on the page.
  json frozen_summary;
  std::vector<json> frozen_epochs;
  std::vector<std::string> missing;
  for (const char* file : {"summary.json", "metrics.jsonl"}) {
    const std::string path = frozen_dir + "/" + file;
    if (!fs::exists(path, ec)) {
      missing.push_back(fmt::format("no {}", file));
      continue;
    }
    try {
      if (std::string(file) == "summary.json")
        frozen_summary = read_json(path);
      else
        frozen_epochs = read_jsonl(path);
    } catch (const Error& e) {
      missing.push_back(e.what());
    }
  }

  std::string body = "<h2>Warm start: the frozen head's run beside this fine-tuning</h2>\n";
  body += "<div class=\"headline\">\n";
  if (frozen_summary.is_object())
    body +=
        metric_box(percent(num(frozen_summary.value("selected_test", json::object()), "accuracy")),
                   fmt::format("frozen head: test accuracy (its run, epoch {} head)",
                               frozen_summary.value("selected_epoch", 0)));
  const json init_test =
      summary.value("finetune", json::object()).value("init_test", json::object());
  if (std::isfinite(num(init_test, "accuracy")))
    body += metric_box(percent(num(init_test, "accuracy")),
                       "frozen head on this test set, before fine-tuning");
  body += metric_box(
      percent(num(summary.value("selected_test", json::object()), "accuracy")),
      fmt::format("fine-tuned: test accuracy (epoch {} head)", summary.value("selected_epoch", 0)));
  body += "</div>\n";

  LineChart tuned = learning_charts(epochs, summary.value("selected_epoch", 0)).first;
  tuned.title = "Fine-tuned (block 5 + head): accuracy per epoch";
  if (frozen_epochs.empty()) {
    body += fmt::format(
        "<p class=\"note\">The frozen head's curves cannot be shown: its run directory <span "
        "class=\"mono\">{}</span> (of --init-head <span class=\"mono\">{}</span>) has {}.</p>\n",
        xml_escape(frozen_dir), xml_escape(init_head),
        xml_escape(missing.empty() ? "no epochs in metrics.jsonl" : missing.front()));
    body += "<div class=\"figs\">\n" + svg_line_chart(tuned) + "</div>\n";
    return body;
  }
  LineChart frozen = learning_charts(frozen_epochs, frozen_summary.is_object()
                                                        ? frozen_summary.value("selected_epoch", 0)
                                                        : static_cast<int>(frozen_epochs.size()))
                         .first;
  frozen.title = "Frozen head (pool5 run): accuracy per epoch";
  frozen.y.min = tuned.y.min = 0.0;  // one scale, so the two can be compared by eye
  body += "<div class=\"figs\">\n" + svg_line_chart(frozen) + svg_line_chart(tuned) + "</div>\n";
  body += fmt::format(
      "<p class=\"note\">Left: the run that trained the --init-head <span class=\"mono\">{}</span> "
      "on the pool5 cache (its directory's metrics.jsonl{}); right: this run, which started from "
      "that head.</p>\n",
      xml_escape(init_head), missing.empty() ? " and summary.json" : "; " + missing.front());
  write_png(run_dir + "/warm_start.png", hstack({png_line_chart(frozen), png_line_chart(tuned)}));
  return body;
}

}  // namespace vggcache
