// What the export tests share: a small carbike64 split (two classes, or three with a synthetic
// third), its caches from random:1 weights at 64 px and heads trained on them, the tools run as
// processes, predict-style probability CSVs, and the check that a refused export wrote nothing.
#pragma once
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_util.h"

namespace vggcache {
namespace export_test {

namespace fs = std::filesystem;
using testing::shell_quote;

constexpr int kPerClass = 12;

struct ToolRun {
  int rc = -1;
  std::string output;  // stdout and stderr
};

inline ToolRun tool(const std::string& name, const std::string& args) {
  ToolRun r;
  r.rc = testing::run_command(shell_quote(testing::bin_dir() + "/" + name) + " " + args, &r.output);
  return r;
}

inline void must(const ToolRun& r, const std::string& what) {
  if (r.rc != 0)
    throw std::runtime_error(what + " failed (" + std::to_string(r.rc) + "):\n" + r.output);
}

// DIR/<class>/ with kPerClass images of carbike64's SPLIT each; a third class, when asked, is
// made of other car images (a synthetic class, only there to exercise the softmax head).
inline void make_split(const std::string& carbike, const std::string& split, const std::string& dir,
                       bool three) {
  std::vector<std::pair<std::string, int>> classes = {{"bicycle", 0}, {"car", 0}};
  if (three) classes.emplace_back("van", kPerClass);
  for (const auto& [cls, first] : classes) {
    fs::create_directories(fs::path(dir) / cls);
    const std::string src = cls == "van" ? "car" : cls;
    for (int i = 0; i < kPerClass; ++i)
      fs::copy_file(fmt::format("{}/{}/{}/{}_{:04d}.jpg", carbike, split, src, src, first + i),
                    fmt::format("{}/{}/{}_{:04d}.jpg", dir, cls, cls, i));
  }
}

// One dataset (two or three classes): splits, caches (random:1, 64 px) and heads on demand.
struct Data {
  std::string dir, test_split, train_split;

  Data(const std::string& carbike, const std::string& root, bool three)
      : dir(root), test_split(root + "/test"), train_split(root + "/train") {
    make_split(carbike, "test", test_split, three);
    make_split(carbike, "train", train_split, three);
    must(tool("extract", "--data " + shell_quote(test_split) + " --out " +
                             shell_quote(dir + "/test.cache") +
                             " --weights random:1 --eval --threads 2 --quiet"),
         "extract (test)");
    must(tool("extract", "--data " + shell_quote(train_split) + " --out " +
                             shell_quote(dir + "/train.cache") +
                             " --weights random:1 --crops 2 --threads 2 --quiet"),
         "extract (train)");
  }

  // A head trained briefly with a tiny learning rate, so probabilities stay away from 0 and 1.
  std::string head(const std::string& name, const std::string& flags) {
    const std::string run = dir + "/" + name;
    if (!fs::exists(run + "/head.bin"))
      must(tool("train_head", "--train " + shell_quote(dir + "/train.cache") + " --test " +
                                  shell_quote(dir + "/test.cache") + " --out " + shell_quote(run) +
                                  " --epochs 3 --lr 1e-5 --hidden 16 --threads 2 --quiet " + flags),
           "train_head " + name);
    return run + "/head.bin";
  }
};

struct World {
  testing::TempDir tmp;
  std::unique_ptr<Data> two, three;
};

inline World& world() {
  static World w;
  return w;
}
inline Data& two_classes(const std::string& carbike) {
  World& w = world();
  if (!w.two) w.two = std::make_unique<Data>(carbike, w.tmp / "two", false);
  return *w.two;
}
inline Data& three_classes(const std::string& carbike) {
  World& w = world();
  if (!w.three) w.three = std::make_unique<Data>(carbike, w.tmp / "three", true);
  return *w.three;
}

// path → probabilities, from a CSV whose probability columns are the ones named p_<class> (the
// test's paths hold no commas or quotes, so fields split on commas).
inline std::map<std::string, std::vector<double>> read_probs(
    const std::string& file, std::vector<std::string>* order = nullptr) {
  std::istringstream in(testing::read_file(file));
  std::string line;
  std::getline(in, line);
  std::vector<size_t> cols;
  {
    std::stringstream ss(line);
    size_t i = 0;
    for (std::string x; std::getline(ss, x, ','); ++i)
      if (x.rfind("p_", 0) == 0) cols.push_back(i);
  }
  std::map<std::string, std::vector<double>> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    std::vector<double> p;
    for (size_t c : cols) p.push_back(std::stod(f.at(c)));
    if (order) order->push_back(f[0]);
    rows[f[0]] = p;
  }
  return rows;
}

// A refused export: exit code `rc`, every `needle` in the message, nothing written.
inline void expect_refused(const std::string& args, const std::string& out, int rc,
                           const std::vector<std::string>& needles) {
  ToolRun r = tool("vggcache-export", args + " --out " + shell_quote(out));
  EXPECT_EQ(r.rc, rc) << r.output;
  for (const auto& n : needles) EXPECT_NE(r.output.find(n), std::string::npos) << n << r.output;
  EXPECT_FALSE(fs::exists(out)) << out;
  EXPECT_FALSE(fs::exists(out + ".json")) << out;  // the pth sidecar
}

}  // namespace export_test
}  // namespace vggcache
