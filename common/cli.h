// Shared command-line plumbing for the tools: logging set-up and the error boundary in main().
#pragma once
#include <functional>

namespace vggcache {

// Runs `body`, turning vggcache::Error and std::exception into a one-line message on stderr and
// exit code 1 (2 for usage errors). Returns body's exit code otherwise.
int run_tool(const char* tool, const std::function<int()>& body);

}  // namespace vggcache
