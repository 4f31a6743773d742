#include "common/cli.h"

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>

#include "common/error.h"

namespace vggcache {

int run_tool(const char* tool, const std::function<int()>& body) {
  // Logs go to stderr: stdout carries results (CSV, JSON) that users pipe elsewhere.
  spdlog::set_default_logger(spdlog::stderr_color_mt(std::string(tool) + "-log"));
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  try {
    return body();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return e.kind() == ErrorKind::kInvalidArgument ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return 1;
  }
}

bool report_usage_error(const char* tool, const std::string& err) {
  if (err.empty()) return true;
  std::fprintf(stderr, "%s: %s\nRun with --help for usage.\n", tool, err.c_str());
  return false;
}

}  // namespace vggcache
