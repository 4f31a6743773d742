// Command-line parsing and validation for `train_head`.
#pragma once
#include <string>
#include <vector>

#include "common/cli.h"
#include "train_head/params.h"

namespace vggcache {

// Parses argv into `params` and validates every range. The status says whether to run or which
// exit code to return at once (common/cli.h). With `sweep`, the sweep flags are
// accepted too (in a sweep --val-fraction defaults to 0.1 and must be > 0).
ParseStatus parse_train_args(int argc, char** argv, TrainParams* params,
                             SweepParams* sweep = nullptr);

// The values --optimizer takes, in the order usage messages list them (one list, so that a new
// optimizer is added in one place).
const std::vector<std::string>& optimizers();

// Checks the ranges of a filled params struct. Returns "" when valid, else a message naming the
// flag ("--lr must be > 0 (got 0)").
std::string validate_train_params(const TrainParams& p);

}  // namespace vggcache
