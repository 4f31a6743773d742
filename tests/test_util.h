// Helpers shared by the tests: temporary directories, the carbike64 dataset, subprocesses.
#pragma once
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

// Runs a shell command; returns its exit status (-1 if it could not run) and captures
// stdout+stderr.
int run_command(const std::string& cmd, std::string* output = nullptr);
// The Python interpreter with Debian's torch (VGGCACHE_PYTHON, default /usr/bin/python3).
std::string python();
std::string source_dir();  // repository root
std::string bin_dir();     // build/bin with the tools
std::string shell_quote(const std::string& s);
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);

}  // namespace vggcache::testing
