#include "common/cli.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>

#include "common/error.h"

namespace vggcache {

int run_tool(const char* tool, const std::function<int()>& body) {
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

}  // namespace vggcache
