// Command-line parsing and validation for `vggcache-export` (no LibTorch here).
#pragma once
#include <string>

#include "common/cli.h"
#include "export/params.h"

namespace vggcache {

// Parses argv into `params` and validates it. The status says whether to run or which exit code
// to return at once (common/cli.h: 2 for usage errors).
ParseStatus parse_export_args(int argc, char** argv, ExportParams* params);

// "" when `p` can be run, else a message naming the flag.
std::string validate_export_params(const ExportParams& p);

}  // namespace vggcache
