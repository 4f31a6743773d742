// The train_head command end to end on synthetic caches (Gaussian clusters written with
// CacheWriter): outputs, multi-class, test-time augmentation, validation without test leakage,
// refusal of mismatched caches, usage errors and thread-independence.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/cache.h"
#include "common/error.h"
#include "head/head_file.h"
#include "train_fixtures.h"

// ThreadSanitizer build (GCC defines __SANITIZE_THREAD__, Clang has the feature test).
#if defined(__SANITIZE_THREAD__)
#define VGGCACHE_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VGGCACHE_UNDER_TSAN 1
#endif
#endif
#ifndef VGGCACHE_UNDER_TSAN
#define VGGCACHE_UNDER_TSAN 0
#endif

namespace vggcache {
namespace {

using nlohmann::json;
using testing::shell_quote;

using testing::ToolRun;
using testing::train_head;

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> v;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) v.push_back(json::parse(line));
  return v;
}

class TrainHeadCli : public ::testing::Test {
 protected:
  // Train: 4 augmented crops per image; test: 3 views per image (exercises TTA averaging).
  void make_pair(int classes, int dim = 64) {
    testing::SyntheticSpec tr;
    tr.dim = dim;
    tr.classes = classes;
    tr.crops = 4;
    tr.seed = 1;
    testing::make_synthetic_cache(train_, tr);
    testing::SyntheticSpec te = tr;
    te.crops = 3;
    te.images_per_class = 15;
    te.seed = 2;
    testing::make_synthetic_cache(test_, te);
  }
  std::string args(const std::string& out, const std::string& extra = "") {
    return "--train " + shell_quote(train_) + " --test " + shell_quote(test_) + " --out " +
           shell_quote(out) + " --epochs 3 --batch 16 --hidden 32 --threads 2 " + extra;
  }
  testing::TempDir tmp_;
  std::string train_ = tmp_ / "train", test_ = tmp_ / "test";
};

TEST_F(TrainHeadCli, BinaryRunWritesAllOutputs) {
  make_pair(2);
  ToolRun r = train_head(args(tmp_ / "run"));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("epoch   3/3"), std::string::npos) << r.output;  // progress lines
  EXPECT_NE(r.output.find("test_acc"), std::string::npos) << r.output;     // final table

  auto epochs = read_jsonl(tmp_ / "run/metrics.jsonl");
  ASSERT_EQ(epochs.size(), 3u);
  for (const char* key : {"epoch", "train_loss", "train_accuracy", "val_accuracy", "test_loss",
                          "test_accuracy", "seconds"})
    EXPECT_TRUE(epochs[0].contains(key)) << key;
  EXPECT_GT(epochs.back()["test_accuracy"].get<double>(), 0.9);
  EXPECT_LT(epochs.back()["train_loss"].get<double>(), epochs.front()["train_loss"].get<double>());

  json s = json::parse(testing::read_file(tmp_ / "run/summary.json"));
  for (const char* key : {"final", "best", "settings", "train_cache", "test_cache",
                          "vectors_per_second", "train_seconds", "per_class", "confusion_matrix"})
    EXPECT_TRUE(s.contains(key)) << key;
  EXPECT_EQ(s["test_cache"]["images"], 30);
  EXPECT_EQ(s["train_cache"]["feature_fingerprint"], s["test_cache"]["feature_fingerprint"]);
  EXPECT_NE(s["train_cache"]["fingerprint"], s["test_cache"]["fingerprint"]);
  EXPECT_EQ(s["train_vectors"], 3 * 80);  // one crop per image per epoch
  int64_t total = 0;
  for (auto& row : s["confusion_matrix"])
    for (auto& c : row) total += c.get<int64_t>();
  EXPECT_EQ(total, 30);  // one prediction per test image, its views averaged
  // Balanced accuracy beside accuracy: the mean of the per-class recalls (both classes present).
  const json& sel = s["selected_test"];
  EXPECT_NEAR(
      sel["balanced_accuracy"].get<double>(),
      (sel["per_class"][0]["recall"].get<double>() + sel["per_class"][1]["recall"].get<double>()) /
          2,
      1e-12);
  EXPECT_GT(sel["macro_f1"].get<double>(), 0.9);
  EXPECT_TRUE(s["final_test"].contains("macro_f1"));

  HeadFile h = load_head(tmp_ / "run/head.bin");
  EXPECT_EQ(h.weights.shape.dim, 64);
  EXPECT_EQ(h.weights.shape.hidden, 32);
  EXPECT_EQ(h.classes, (std::vector<std::string>{"class0", "class1"}));
  EXPECT_TRUE(h.standardizer.empty());
  EXPECT_EQ(h.features["fingerprint"], s["train_cache"]["feature_fingerprint"]);
  // A head refuses a cache made with other feature settings.
  CacheMeta other = read_cache_meta(train_);
  EXPECT_NO_THROW(check_head_matches_cache(h, "head.bin", other, train_));
  other.preprocess.size = 100;
  EXPECT_THROW(check_head_matches_cache(h, "head.bin", other, "x"), Error);
}

TEST_F(TrainHeadCli, MultiClassSoftmax) {
  make_pair(4);
  ToolRun r = train_head(args(tmp_ / "run", "--all-crops --standardize --dropout 0.2"));
  ASSERT_EQ(r.rc, 0) << r.output;
  json s = json::parse(testing::read_file(tmp_ / "run/summary.json"));
  EXPECT_EQ(s["confusion_matrix"].size(), 4u);
  EXPECT_EQ(s["per_class"].size(), 4u);
  EXPECT_EQ(s["train_vectors"], 3 * 160 * 4);  // --all-crops
  EXPECT_GT(s["final"]["test_accuracy"].get<double>(), 0.85);
  HeadFile h = load_head(tmp_ / "run/head.bin");
  EXPECT_EQ(h.weights.shape.outputs(), 4);
  EXPECT_EQ(h.standardizer.mean.size(), 64u);
}

TEST_F(TrainHeadCli, ValidationSelectsWithoutLookingAtTest) {
  make_pair(2);
  // A second test cache with the classes' centres swapped: any use of the test set for
  // selection would change the chosen head; it must not.
  testing::SyntheticSpec sw;
  sw.crops = 3;
  sw.images_per_class = 15;
  sw.seed = 2;
  sw.swap_centres = true;
  std::string swapped = tmp_ / "test_swapped";
  testing::make_synthetic_cache(swapped, sw);
  std::string extra = "--val-fraction 0.25 --epochs 4 --dropout 0.5";
  ToolRun a = train_head(args(tmp_ / "a", extra));
  ASSERT_EQ(a.rc, 0) << a.output;
  ToolRun b = train_head("--train " + shell_quote(train_) + " --test " + shell_quote(swapped) +
                         " --out " + shell_quote(tmp_ / "b") +
                         " --epochs 4 --batch 16 --hidden 32 --threads 2 " + extra);
  ASSERT_EQ(b.rc, 0) << b.output;
  json sa = json::parse(testing::read_file(tmp_ / "a/summary.json"));
  json sb = json::parse(testing::read_file(tmp_ / "b/summary.json"));
  EXPECT_EQ(sa["val_images"], 20);  // 25% of 80 images, whole images
  EXPECT_EQ(sa["train_cache"]["images"], 60);
  EXPECT_EQ(sa["selection"], "val_accuracy");
  EXPECT_EQ(sa["selected_epoch"], sb["selected_epoch"]);
  EXPECT_EQ(testing::read_file(tmp_ / "a/head.bin"), testing::read_file(tmp_ / "b/head.bin"));
  // The test sets really differ, and the selected epoch is the best by validation accuracy
  // (ties: lower validation loss).
  EXPECT_GT(sa["final"]["test_accuracy"].get<double>(), 0.8);
  EXPECT_LT(sb["final"]["test_accuracy"].get<double>(), 0.2);
  auto epochs = read_jsonl(tmp_ / "a/metrics.jsonl");
  double best_acc = -1, best_loss = 0;
  int best_epoch = 0;
  for (auto& e : epochs) {
    double acc = e["val_accuracy"], loss = e["val_loss"];
    if (acc > best_acc || (acc == best_acc && loss < best_loss))
      best_acc = acc, best_loss = loss, best_epoch = e["epoch"];
  }
  EXPECT_EQ(sa["selected_epoch"].get<int>(), best_epoch);
}

TEST_F(TrainHeadCli, RefusesCachesWithOtherFeatureSettings) {
  make_pair(2);
  struct Case {
    const char* what;
    testing::SyntheticSpec spec;
  } cases[3];
  cases[0] = {"preprocess.size", {}};
  cases[0].spec.size = 100;
  cases[1] = {"weights", {}};
  cases[1].spec.weights = "random:2";
  cases[2] = {"dim", {}};
  cases[2].spec.dim = 32;
  for (auto& c : cases) {
    std::string dir = tmp_ / (std::string("bad_") + c.what);
    testing::make_synthetic_cache(dir, c.spec);
    ToolRun r = train_head("--train " + shell_quote(train_) + " --test " + shell_quote(dir) +
                           " --out " + shell_quote(tmp_ / "run"));
    EXPECT_EQ(r.rc, 1) << r.output;
    EXPECT_NE(r.output.find(c.what), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(dir), std::string::npos) << r.output;
  }
}

TEST_F(TrainHeadCli, RefusesToTrainOnACorruptRecord) {
  make_pair(2);
  // Find record (7, 2)'s payload bytes in data.mdb and flip one bit.
  std::string needle;
  {
    auto r = CacheReader::open(train_);
    ReadTxn t = r->begin();
    RecordView v;
    ASSERT_TRUE(t.get(7, 2, &v));
    needle.assign(reinterpret_cast<const char*>(v.payload), 32);
  }
  std::string data = testing::read_file(train_ + "/data.mdb");
  const size_t pos = data.find(needle);
  ASSERT_NE(pos, std::string::npos);
  ASSERT_EQ(data.find(needle, pos + 1), std::string::npos);
  data[pos + 9] ^= 0x20;
  testing::write_file(train_ + "/data.mdb", data);
  const std::string out = tmp_ / "run";
  ToolRun r = train_head(args(out));
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("record (7, 2): checksum mismatch"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out + "/head.bin"));  // never a head trained on garbage
}

TEST_F(TrainHeadCli, UsageErrorsNameTheFlag) {
  const char* cases[][2] = {{"--lr 0", "--lr"},
                            {"--dropout 1", "--dropout"},
                            {"--dropout -0.1", "--dropout"},
                            {"--batch 0", "--batch"},
                            {"--epochs 0", "--epochs"},
                            {"--val-fraction 1", "--val-fraction"},
                            {"--threads 0", "--threads"}};
  for (auto& c : cases) {
    ToolRun r = train_head("--train a --test b --out c " + std::string(c[0]));
    EXPECT_EQ(r.rc, 2) << c[0] << ": " << r.output;
    EXPECT_NE(r.output.find(c[1]), std::string::npos) << r.output;
  }
  ToolRun missing = train_head("--train " + shell_quote(tmp_ / "nope") + " --test x --out " +
                               shell_quote(tmp_ / "run"));
  EXPECT_NE(missing.rc, 0);
  EXPECT_LT(missing.rc, 128) << "must exit with a message, not abort: " << missing.output;
  EXPECT_NE(missing.output.find("nope"), std::string::npos) << missing.output;
}

TEST_F(TrainHeadCli, SameResultWithAnyThreadCount) {
  make_pair(3);
  ToolRun a = train_head(args(tmp_ / "t1", "--standardize") + " --threads 1");
  ToolRun b = train_head(args(tmp_ / "t2", "--standardize"));
  ASSERT_EQ(a.rc, 0) << a.output;
  ASSERT_EQ(b.rc, 0) << b.output;
  EXPECT_EQ(testing::read_file(tmp_ / "t1/head.bin"), testing::read_file(tmp_ / "t2/head.bin"));
}

TEST_F(TrainHeadCli, MemoryBoundedByModelNotCache) {
  // A 300 MB cache (3000 vectors × 25088) and a small head: the process's anonymous memory must
  // stay far below the cache size, because batches are gathered from the memory map.
  testing::SyntheticSpec big;
  big.dim = 25088;
  big.images_per_class = 1500;
  big.separation = 0.3f;
  testing::make_synthetic_cache(train_, big);
  testing::SyntheticSpec small = big;
  small.images_per_class = 10;
  small.seed = 3;
  testing::make_synthetic_cache(test_, small);
  ToolRun r = train_head("--train " + shell_quote(train_) + " --test " + shell_quote(test_) +
                         " --out " + shell_quote(tmp_ / "run") +
                         " --epochs 1 --batch 100 --hidden 16 --threads 2 --quiet");
  ASSERT_EQ(r.rc, 0) << r.output;
  json s = json::parse(testing::read_file(tmp_ / "run/summary.json"));
  const double cache_mb = 3000.0 * 25088 * 4 / 1e6;
  const double anon_mb = s["peak_rss_anon_bytes"].get<double>() / 1e6;
  std::printf("cache %.0f MB, peak anonymous RSS %.0f MB\n", cache_mb, anon_mb);
  EXPECT_GT(anon_mb, 0.0);
#if VGGCACHE_UNDER_TSAN
  // ThreadSanitizer keeps shadow state, in anonymous memory, for every byte the program touches,
  // the mapped cache included (~4x its size): the bound is checked in the other builds. The run
  // above still goes through TSan.
  GTEST_SKIP() << "peak anonymous RSS includes ThreadSanitizer's shadow of the mapped cache";
#endif
  EXPECT_LT(anon_mb, 0.4 * cache_mb);
}

}  // namespace
}  // namespace vggcache
