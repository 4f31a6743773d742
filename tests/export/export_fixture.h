// What the export tests share: a small carbike64 split (two classes, or three with a synthetic
// third), its caches from random:1 weights (or a seeded weights file) at 64 px and heads trained
// on them (block 5 fine-tuned too), the tools run as processes, predict-style probability CSVs,
// and the check that a refused export wrote nothing.
#pragma once
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "head/head_file.h"
#include "random_vgg16.h"
#include "test_util.h"
#include "weights/pth_reader.h"

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

using Probs = std::map<std::string, std::vector<double>>;  // path → probabilities in label order

struct Comparison {
  double worst = 0;          // largest |got − want|
  double worst_share = 0;    // largest |got − want| / bound
  double largest_bound = 0;  // of the bounds applied
};

// Every path and class of `want` in `got` within bound(path, class); `what` names `got` in
// failure messages. Probabilities that are all near 0 or 1 would make the comparison vacuous:
// that fails too.
template <typename Bound>
Comparison compare_probs(const Probs& want, const Probs& got, Bound bound,
                         const std::string& what) {
  Comparison r;
  bool away_from_0_and_1 = false;
  EXPECT_EQ(got.size(), want.size()) << what;
  for (const auto& [path, p] : want) {
    auto it = got.find(path);
    if (it == got.end()) {
      ADD_FAILURE() << path << " missing from " << what;
      continue;
    }
    EXPECT_EQ(it->second.size(), p.size()) << path;
    for (size_t c = 0; c < p.size() && c < it->second.size(); ++c) {
      const double diff = std::abs(it->second[c] - p[c]), b = bound(path, c);
      EXPECT_LE(diff, b) << what << ", " << path << " class " << c << ": " << it->second[c]
                         << " vs " << p[c];
      r.worst = std::max(r.worst, diff);
      r.worst_share = std::max(r.worst_share, diff / b);
      r.largest_bound = std::max(r.largest_bound, b);
      away_from_0_and_1 |= p[c] > 0.01 && p[c] < 0.99;
    }
  }
  EXPECT_TRUE(away_from_0_and_1) << "saturated probabilities would make the comparison vacuous";
  return r;
}

// One dataset (two or three classes): splits, caches (64 px) and heads on demand. Weights:
// LibTorch's random:1, or with `weights_file` seeded random weights written as a .pth file, which
// fine-tuning needs (it reads block 5 from the file).
struct Data {
  std::string dir, test_split, train_split, weights;

  Data(const std::string& carbike, const std::string& root, bool three, bool weights_file = false)
      : dir(root),
        test_split(root + "/test"),
        train_split(root + "/train"),
        weights(weights_file ? root + "/vgg16.pth" : "random:1") {
    make_split(carbike, "test", test_split, three);
    make_split(carbike, "train", train_split, three);
    if (weights_file) testing::write_random_vgg16(weights, 11);
    cache("test", "pool5");
    cache("train", "pool5");
  }

  // SPLIT's cache at CUT (extracted on first use): the test split's eval view, two crops of each
  // training image.
  std::string cache(const std::string& split, const std::string& cut) {
    const std::string out = dir + "/" + split + (cut == "pool5" ? ".cache" : "." + cut);
    if (!fs::exists(out))
      must(tool("extract", "--data " + shell_quote(split == "test" ? test_split : train_split) +
                               " --out " + shell_quote(out) + " --weights " + shell_quote(weights) +
                               " --cut " + cut + (split == "test" ? " --eval" : " --crops 2") +
                               " --threads 2 --quiet"),
           "extract (" + split + ", " + cut + ")");
    return out;
  }

  // A head trained briefly with a tiny learning rate, so probabilities stay away from 0 and 1.
  std::string head(const std::string& name, const std::string& flags) {
    const std::string run = dir + "/" + name;
    if (!fs::exists(run + "/head.bin"))
      must(tool("train_head", "--train " + shell_quote(cache("train", "pool5")) + " --test " +
                                  shell_quote(cache("test", "pool5")) + " --out " +
                                  shell_quote(run) +
                                  " --epochs 3 --lr 1e-5 --hidden 16 --threads 2 --quiet " + flags),
           "train_head " + name);
    return run + "/head.bin";
  }

  // Block 5 fine-tuned with head("plain") from the pool4 caches: the head's rate stays tiny, block
  // 5's is large enough that its tuning visibly moves the probabilities (untuned_gap()).
  std::string tuned_head(const std::string& name, const std::string& flags) {
    const std::string run = dir + "/" + name;
    if (!fs::exists(run + "/head.bin"))
      must(tool("train_head", "--train " + shell_quote(cache("train", "pool4")) + " --test " +
                                  shell_quote(cache("test", "pool4")) + " --out " +
                                  shell_quote(run) + " --weights " + shell_quote(weights) +
                                  " --init-head " + shell_quote(head("plain", "")) +
                                  " --epochs 3 --lr 1e-5 --lr-block5 1e-3 --threads 2 --quiet " +
                                  flags),
           "train_head " + name);
    return run + "/head.bin";
  }

  std::string predict_csv(const std::string& name) const {
    return dir + "/" + name + ".predict.csv";
  }

  // predict's probabilities on the test split (written to predict_csv(name)).
  std::string predict(const std::string& head, const std::string& name) {
    const std::string csv = predict_csv(name);
    must(tool("predict", "--weights " + shell_quote(weights) + " --head " + shell_quote(head) +
                             " --out " + shell_quote(csv) + " --threads 2 --quiet " +
                             shell_quote(test_split)),
         "predict " + name);
    return csv;
  }

  // How far block 5's tuning moves the test probabilities: predict with the tuned head against
  // the same head over the weights file's block 5. An export that left conv5 as the file has it
  // would be off by this much, so a comparison's tolerance must be well below it. `tuned_csv`:
  // predict()'s output for `tuned`, which the comparison has already made.
  double untuned_gap(const std::string& tuned, const std::string& tuned_csv) {
    HeadFile h = load_head(tuned);
    const StateDict file = read_state_dict(weights);
    for (int i = 0; i < 3; ++i) {
      h.block5.weight[i] = file.at(TunedBlock5::weight_name(i)).values;
      h.block5.bias[i] = file.at(TunedBlock5::bias_name(i)).values;
    }
    const std::string untuned = tuned + ".untuned.bin";
    save_head(untuned, h);
    auto a = read_probs(tuned_csv), b = read_probs(predict(untuned, "untuned"));
    double gap = 0;
    for (const auto& [path, p] : a)
      for (size_t c = 0; c < p.size(); ++c) gap = std::max(gap, std::abs(p[c] - b.at(path).at(c)));
    return gap;
  }
};

struct World {
  testing::TempDir tmp;
  std::unique_ptr<Data> two, three, file;
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

inline Data& file_weights(const std::string& carbike) {
  World& w = world();
  if (!w.file) w.file = std::make_unique<Data>(carbike, w.tmp / "file", false, true);
  return *w.file;
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
