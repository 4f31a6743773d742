// `train_head --collect SWEEP_DIR... [--out DIR]`: merges the directories of one sweep's shards
// (or of runs resumed elsewhere) into one results table. Directories of different sweeps are
// refused (Error(kMismatch) naming the directory and the differing identity field).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace vggcache {

struct CollectSummary {
  size_t configurations = 0;  // in the sweep
  size_t finished = 0;        // found finished in the directories
  std::string out_dir;        // where results.csv, results.json and best.json went
};

// Merges `dirs` into out_dir ("" = the first directory), which also gets the sweep.json.
CollectSummary collect_sweeps(const std::vector<std::string>& dirs, const std::string& out_dir);

// True when argv asks for --collect (checked before the training flags are parsed).
bool is_collect_command(int argc, char** argv);

// Parses the collect flags, merges and prints the top of the table. Returns the exit status.
int collect_command(int argc, char** argv);

}  // namespace vggcache
