// Command-line parsing and validation for `train_head`.
#pragma once
#include <string>

#include "train_head/params.h"

namespace vggcache {

// Parses argv into `params` and validates every range. Returns -1 when the command should run,
// else the exit status to return at once: 0 after --help, 2 after a usage error (the message,
// naming the offending flag, has been printed to stderr). With `sweep`, the sweep flags are
// accepted too (in a sweep --val-fraction defaults to 0.1 and must be > 0).
int parse_train_args(int argc, char** argv, TrainParams* params, SweepParams* sweep = nullptr);

// Checks the ranges of a filled params struct. Returns "" when valid, else a message naming the
// flag ("--lr must be > 0 (got 0)").
std::string validate_train_params(const TrainParams& p);

}  // namespace vggcache
