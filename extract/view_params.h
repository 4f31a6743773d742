// The view settings extract and predict share: how crops are drawn from an image and how the
// forward pass runs. ExtractParams and PredictParams both hold them (as a base), and both CLIs
// add and check them through the functions here, so a flag means the same in both tools and
// `predict --tta K` reproduces `extract --crops K` view for view.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace vggcache {

struct ViewParams {
  double scale_min = 0.5;  // --scale MIN,MAX: crop area fraction, 0 < MIN <= MAX <= 1
  double scale_max = 1.0;
  double ratio_min = 0.75;  // --ratio MIN,MAX: crop aspect range, 0 < MIN <= MAX
  double ratio_max = 4.0 / 3.0;
  bool flip = false;           // --flip: random horizontal flip with p = 0.5
  uint64_t seed = 1;           // --seed: view k of image i depends only on (seed, i, k)
  int batch = 64;              // --batch: views per forward pass (>= 1)
  int threads = 0;             // --threads N: decode, LibTorch and head threads (>= 1);
                               //   0 = not given: the number of hardware threads
  std::string device = "cpu";  // --device cpu|cuda
  bool quiet = false;          // --quiet: no progress lines (summary and warnings still printed)
};

// The help texts that differ between the tools (predict's crop flags apply only with --tta).
struct ViewFlagHelp {
  const char* scale;
  const char* ratio;
  const char* flip;
  const char* seed;
  const char* batch;
};

// What CLI11 parsed for the view flags before take_view_flags() checks it. Must outlive the
// app's parse() (CLI11 writes into it).
struct ViewFlagValues {
  std::vector<double> scale, ratio;  // as given: MIN,MAX or empty
};

// Adds --scale and --ratio (MIN,MAX), --flip and --seed to `app`, writing into `values` and `v`.
void add_crop_flags(CLI::App& app, const ViewFlagHelp& help, ViewParams* v, ViewFlagValues* values);
// Adds --batch, --threads and --device to `app`, writing into `v`.
void add_run_flags(CLI::App& app, const ViewFlagHelp& help, ViewParams* v);

// After app.parse(): copies --scale/--ratio into `v` and defaults --threads to the hardware
// threads. Returns false after printing "TOOL: --scale needs exactly two numbers MIN,MAX" to
// stderr.
bool take_view_flags(const CLI::App& app, const char* tool, const ViewFlagValues& values,
                     ViewParams* v);

// "" when the view settings are in range, else a message naming the flag.
std::string validate_view_params(const ViewParams& v);

}  // namespace vggcache
