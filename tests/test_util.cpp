#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

// OpenBLAS names the kernel it picked at run time. Weak: test executables that do not link
// OpenBLAS see a null pointer instead of failing to link.
extern "C" char* openblas_get_corename(void) __attribute__((weak));

namespace fs = std::filesystem;

namespace vggcache::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/vggcache-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

std::string carbike_dir() {
  if (const char* env = std::getenv("VGGCACHE_CARBIKE"); env && *env) {
    return fs::is_directory(env) ? std::string(env) : std::string();
  }
  fs::path p = fs::path(VGGCACHE_SOURCE_DIR) / ".." / "shared" / "datasets" / "carbike64";
  std::error_code ec;
  if (fs::is_directory(p / "train", ec) && fs::is_directory(p / "test", ec)) {
    return fs::weakly_canonical(p).string();
  }
  return "";
}

int run_command(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  FILE* f = popen(full.c_str(), "r");
  if (!f) return -1;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int status = pclose(f);
  if (output) *output = out;
  if (status == -1) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

int ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if ((ia < 0) != (ib < 0)) return a == b ? 0 : INT32_MAX;
  return std::abs(ia - ib);
}

std::string run_ok(const std::string& cmd) {
  std::string out;
  const int rc = run_command(cmd, &out);
  EXPECT_EQ(rc, 0) << cmd << "\n" << out;
  return out;
}

std::string python() {
  const char* env = std::getenv("VGGCACHE_PYTHON");
  return env && *env ? env : VGGCACHE_PYTHON;
}
std::string source_dir() {
  return VGGCACHE_SOURCE_DIR;
}
std::string bin_dir() {
  return VGGCACHE_BIN_DIR;
}

std::string shell_quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) {
    if (c == '\'')
      r += "'\\''";
    else
      r += c;
  }
  return r + "'";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string kernel_description() {
  std::string blas = openblas_get_corename ? std::string("OpenBLAS ") + openblas_get_corename()
                                           : std::string("OpenBLAS not linked");
  if (const char* forced = std::getenv("OPENBLAS_CORETYPE"); forced && *forced)
    blas += std::string(" (OPENBLAS_CORETYPE=") + forced + ")";
  const char* isa = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (!isa || !*isa) isa = std::getenv("DNNL_MAX_CPU_ISA");
  return blas + "; oneDNN max ISA " + (isa && *isa ? isa : "auto");
}

void report_numerics(const std::string& what, double worst, double bound) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string test =
      info ? std::string(info->test_suite_name()) + "." + info->name() : std::string("?");
  const std::string kernels = kernel_description();
  std::printf("[numerics] %s: worst %.3g, bound %.3g (%.0f%% of it) [%s]\n", what.c_str(), worst,
              bound, bound > 0 ? 100.0 * worst / bound : 0.0, kernels.c_str());
  std::fflush(stdout);
  if (const char* log = std::getenv("VGGCACHE_NUMERICS_LOG"); log && *log) {
    if (FILE* f = std::fopen(log, "a")) {
      std::fprintf(f, "%s\t%s\t%.6g\t%.6g\t%s\n", test.c_str(), what.c_str(), worst, bound,
                   kernels.c_str());
      std::fclose(f);
    }
  }
}

}  // namespace vggcache::testing
