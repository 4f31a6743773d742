// Command-line parsing and validation for `predict` (no LibTorch here, so tests stay cheap).
#pragma once
#include <string>

#include "common/cli.h"
#include "predict/params.h"

namespace vggcache {

// Parses argv into `params` and validates every range. The status says whether to run or which
// exit code to return at once (common/cli.h).
ParseStatus parse_predict_args(int argc, char** argv, PredictParams* params);

// "" when the ranges of `p` are valid, else a message naming the flag.
std::string validate_predict_params(const PredictParams& p);

}  // namespace vggcache
