// The fixture of the tests that run train_head on pool4 caches (test_finetune_run.cpp,
// test_finetune_sweep.cpp): a tiny carbike64 extraction (64 px, 6 training and 5 test images per
// class, 2 crops) cut at pool4 and at pool5 with seeded random VGG16 weights written as a .pth
// file, made once per build tree, and helpers to run the tools on it.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vggcache::testing {

inline constexpr int kTrainPerClass = 6, kTestPerClass = 5, kCrops = 2;

struct ToolRun {
  int rc = -1;
  std::string output;
};

// Runs bin/<name> with `args` (already shell-quoted), stdout and stderr together.
ToolRun tool(const std::string& name, const std::string& args);

struct World {
  std::string dir;
  std::string weights() const { return dir + "/vgg16_a.pth"; }
  std::string other_weights() const { return dir + "/vgg16_b.pth"; }
  std::string train_split() const { return dir + "/train"; }
  std::string test_split() const { return dir + "/test"; }
  std::string cache(const std::string& split, const std::string& cut) const {
    return dir + "/" + split + "." + cut;
  }
};

// The world for `carbike` (the dataset's directory): built at the first call in a build tree
// (extract costs a few seconds), then reused, also by concurrent test processes.
World world(const std::string& carbike);

// train_head --train/--test the world's caches of `cut` --out `out` `extra`.
ToolRun train(const World& w, const std::string& cut, const std::string& out,
              const std::string& extra);

nlohmann::json read_json(const std::string& path);
std::vector<std::string> read_lines(const std::string& path);

// The tool exited with `rc` and its output holds every one of `parts`.
void expect_refused(const ToolRun& r, int rc, const std::vector<std::string>& parts);

}  // namespace vggcache::testing
