// Command-line parsing and validation for `extract` (no LibTorch here, so tests stay cheap).
#pragma once
#include <string>

#include "common/cli.h"
#include "extract/params.h"

namespace vggcache {

// Parses argv into `params` and validates every range. The status says whether to run or which
// exit code to return at once (common/cli.h).
ParseStatus parse_extract_args(int argc, char** argv, ExtractParams* params);

// Checks the ranges of an already-filled params struct. Returns "" when valid, else a message
// naming the flag ("--crops must be >= 1 (got 0)").
std::string validate_extract_params(const ExtractParams& p);

}  // namespace vggcache
