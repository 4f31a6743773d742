// Command-line parsing and validation for `predict` (no LibTorch here, so tests stay cheap).
#pragma once
#include <string>

#include "predict/params.h"

namespace vggcache {

// Parses argv into `params`. Returns -1 when the command should run, else the exit status to
// return at once: 0 after --help, 2 after a usage error (the message, naming the offending flag,
// has been printed to stderr).
int parse_predict_args(int argc, char** argv, PredictParams* params);

// "" when the ranges of `p` are valid, else a message naming the flag.
std::string validate_predict_params(const PredictParams& p);

}  // namespace vggcache
