#include "extract/view_params.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <thread>

namespace vggcache {

void add_crop_flags(CLI::App& app, const ViewFlagHelp& help, ViewParams* v,
                    ViewFlagValues* values) {
  // TakeAll: CLI11 splits MIN,MAX on the delimiter; take_view_flags() wants exactly two numbers.
  app.add_option("--scale", values->scale, help.scale)
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--ratio", values->ratio, help.ratio)
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_flag("--flip", v->flip, help.flip);
}

void add_run_flags(CLI::App& app, const ViewFlagHelp& help, ViewParams* v) {
  app.add_option("--seed", v->seed, help.seed)->capture_default_str();
  app.add_option("--batch", v->batch, help.batch)->capture_default_str();
  app.add_option("--threads", v->threads, "worker threads (default: all hardware threads)");
  app.add_option("--device", v->device, "cpu or cuda")->capture_default_str();
}

bool take_view_flags(const CLI::App& app, const char* tool, const ViewFlagValues& values,
                     ViewParams* v) {
  auto take_pair = [&](const std::vector<double>& pair, const char* flag, double* lo, double* hi) {
    if (pair.empty()) return true;
    if (pair.size() != 2) {
      fmt::print(stderr, "{}: {} needs exactly two numbers MIN,MAX\n", tool, flag);
      return false;
    }
    *lo = pair[0];
    *hi = pair[1];
    return true;
  };
  if (!take_pair(values.scale, "--scale", &v->scale_min, &v->scale_max) ||
      !take_pair(values.ratio, "--ratio", &v->ratio_min, &v->ratio_max))
    return false;
  if (app.count("--threads") == 0)
    v->threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return true;
}

std::string validate_view_params(const ViewParams& v) {
  // The negated comparisons also reject NaN.
  if (!(v.scale_min > 0.0 && v.scale_max <= 1.0 && v.scale_min <= v.scale_max))
    return fmt::format("--scale must be MIN,MAX with 0 < MIN <= MAX <= 1 (got {},{})", v.scale_min,
                       v.scale_max);
  if (!(v.ratio_min > 0.0 && v.ratio_min <= v.ratio_max && v.ratio_max < 1e6))
    return fmt::format("--ratio must be MIN,MAX with 0 < MIN <= MAX (got {},{})", v.ratio_min,
                       v.ratio_max);
  if (v.batch < 1) return fmt::format("--batch must be >= 1 (got {})", v.batch);
  if (v.threads < 1) return fmt::format("--threads must be >= 1 (got {})", v.threads);
  if (v.device != "cpu" && v.device != "cuda")
    return fmt::format("--device must be cpu or cuda (got {})", v.device);
  return "";
}

}  // namespace vggcache
