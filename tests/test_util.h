// Helpers shared by the tests: temporary directories, the carbike64 dataset, subprocesses.
#pragma once
#include <cmath>
#include <string>
#include <vector>

namespace vggcache::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Path of ../shared/datasets/carbike64 (or $VGGCACHE_CARBIKE). Returns "" when missing; tests use
// VGGCACHE_REQUIRE_CARBIKE(dir), which skips locally but FAILS under CI=true (CI must not skip).
std::string carbike_dir();
#define VGGCACHE_REQUIRE_CARBIKE(dir_var)                                          \
  std::string dir_var = ::vggcache::testing::carbike_dir();                        \
  if (dir_var.empty()) {                                                           \
    if (::vggcache::testing::in_ci()) FAIL() << "carbike64 dataset missing in CI"; \
    GTEST_SKIP() << "carbike64 dataset not found";                                 \
  }
bool in_ci();

// Units in the last place between two floats (INT32_MAX across a sign change, 0 for ±0).
int ulp_distance(float a, float b);

// Runs a shell command; returns its exit status (-1 if it could not run) and captures
// stdout+stderr.
int run_command(const std::string& cmd, std::string* output = nullptr);
// run_command that records a test failure (naming the command and its output) unless it exits 0;
// returns the output either way.
std::string run_ok(const std::string& cmd);
// The Python interpreter with Debian's torch (VGGCACHE_PYTHON, default /usr/bin/python3).
std::string python();
std::string source_dir();  // repository root
std::string bin_dir();     // build/bin with the tools
std::string shell_quote(const std::string& s);
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);

// Numerics reporting (the portability suite, scripts/check_hard.sh's "kernels" step): which
// run-time-dispatched kernels this process runs, and each numerical comparison's worst observed
// difference against its bound. Lines go to stdout as "[numerics] ..." and, when
// $VGGCACHE_NUMERICS_LOG names a file, are appended there as tab-separated rows
// (test, what, worst, bound, kernels) for the suite's table. Thread-safe; never throws.
std::string kernel_description();  // e.g. "OpenBLAS Cooperlake; oneDNN max ISA auto"
void report_numerics(const std::string& what, double worst, double bound);

// float32's unit roundoff u = 2^-24.
constexpr double kUnitRoundoff = 5.9604644775390625e-08;
// How far two float32 evaluations of the same sums of `terms` terms may differ, relatively: each
// carries a relative rounding error of about √terms·u (independent roundings of either sign:
// the probabilistic model of Higham & Mary, SIAM J. Sci. Comput. 41(5), 2019), so two differ by
// up to 2·√terms·u. Along `rounds` steps of a computation that does not amplify differences (a
// training trajectory away from ties), each step's rounding is independent of the others', so
// they add up as a random walk: √rounds times one step's. Whatever summation order or blocking a
// kernel picks, this holds: it depends only on the length of the sums and the number of steps.
inline double rounding_bound(double terms, int rounds = 1) {
  return 2.0 * std::sqrt(static_cast<double>(rounds)) * std::sqrt(terms) * kUnitRoundoff;
}
// How far two float32 evaluations of VGG16's features may differ, relative to the largest
// feature: each 3×3 convolution sums 9·C_in terms, and its rounding carries through ReLU and
// max-pooling (neither amplifies a difference) into the next layer, so the thirteen layers'
// bounds add up (7.2e-5). It depends only on the lengths of the sums, not on the kernels oneDNN
// or OpenBLAS pick.
// `convs`: how many of the 13 convolutions the compared output went through (10 for pool4).
inline double vgg16_features_bound(int convs = 13) {
  double b = 0;
  int i = 0;
  for (int c_in : {3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512})
    if (i++ < convs) b += rounding_bound(9.0 * c_in);
  return b;
}

}  // namespace vggcache::testing
