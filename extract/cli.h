// Command-line parsing and validation for `extract` (no LibTorch here, so tests stay cheap).
#pragma once
#include <string>

#include "extract/params.h"

namespace vggcache {

// Parses argv into `params` and validates every range. Returns -1 when the command should run,
// else the exit status to return at once: 0 after --help, 2 after a usage error (the message,
// naming the offending flag, has been printed to stderr).
int parse_extract_args(int argc, char** argv, ExtractParams* params);

// Checks the ranges of an already-filled params struct. Returns "" when valid, else a message
// naming the flag ("--crops must be >= 1 (got 0)").
std::string validate_extract_params(const ExtractParams& p);

}  // namespace vggcache
