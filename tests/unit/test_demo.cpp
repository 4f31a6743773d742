// The README's main command, scripts/demo.sh (what `make demo` runs after building), on a small
// generated dataset: offline, random weights announced, every output written, caches reused.
#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"

namespace vggcache {
namespace {

using testing::run_command;
using testing::shell_quote;

TEST(Demo, RunsEndToEndOnGeneratedDataAndReusesCaches) {
  testing::TempDir tmp;
  std::string out;
  ASSERT_EQ(run_command(testing::python() + " " + testing::source_dir() +
                            "/data/make_synthetic.py " + shell_quote(tmp / "data") +
                            " --per-class 12 --test-per-class 6",
                        &out),
            0)
      << out;
  const std::string build = std::filesystem::path(testing::bin_dir()).parent_path().string();
  const std::string env = "VGGCACHE_DEMO_DIR=" + shell_quote(tmp / "demo") +
                          " VGGCACHE_DEMO_DATA=" + shell_quote(tmp / "data") +
                          " VGGCACHE_DEMO_CROPS=2 VGGCACHE_DEMO_EPOCHS=2 THREADS=2 ";
  const std::string cmd = env + "bash " + testing::source_dir() + "/scripts/demo.sh " +
                          shell_quote(build);
  ASSERT_EQ(run_command(cmd, &out), 0) << out;
  // No official weights in a test checkout: the random-weights banner must say so.
  if (!std::filesystem::exists(testing::source_dir() + "/data/vgg16-397923af.pth")) {
    EXPECT_NE(out.find("RANDOM VGG16 weights"), std::string::npos) << out;
    EXPECT_NE(out.find("NOT pretrained"), std::string::npos) << out;
  }
  EXPECT_NE(out.find("records, 24 images: OK"), std::string::npos) << out;
  EXPECT_NE(out.find("results in"), std::string::npos) << out;
  int runs = 0;
  for (const auto& run : std::filesystem::directory_iterator(tmp / "demo/runs")) {
    ++runs;
    for (const char* f : {"report.html", "metrics.jsonl", "summary.json", "predictions.csv",
                          "head.bin", "learning_curves.png"})
      EXPECT_TRUE(std::filesystem::exists(run.path() / f)) << f;
  }
  EXPECT_EQ(runs, 1);
  // A second run reuses both caches instead of extracting again.
  ASSERT_EQ(run_command(cmd, &out), 0) << out;
  EXPECT_NE(out.find("is already complete"), std::string::npos) << out;
}

}  // namespace
}  // namespace vggcache
