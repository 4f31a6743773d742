// Shared command-line plumbing for the tools: logging set-up and the error boundary in main().
#pragma once
#include <functional>
#include <string>

namespace vggcache {

// What a tool's parse_*_args() decided: run the command, or return `exit_code` from main() at
// once (0 after --help, 2 after a usage error whose message, naming the flag, is on stderr).
struct ParseStatus {
  bool run = true;
  int exit_code = 0;
  static ParseStatus proceed() { return {true, 0}; }
  static ParseStatus exit(int code) { return {false, code}; }
};

// The one tail of every parse function: true when `err` (a validate_*_params() message) is empty,
// else prints "TOOL: ERR\nRun with --help for usage." to stderr and returns false.
bool report_usage_error(const char* tool, const std::string& err);

// Runs `body`, turning vggcache::Error and std::exception into a one-line message on stderr and
// exit code 1 (2 for usage errors). Returns body's exit code otherwise.
int run_tool(const char* tool, const std::function<int()>& body);

}  // namespace vggcache
