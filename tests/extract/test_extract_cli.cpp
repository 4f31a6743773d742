// The `extract` tool end to end: record counts, bad files (skip + metadata + summary; --strict),
// flag validation, settings mismatch on an existing cache, --overwrite, --eval views.
// Uses random:SEED weights and 32 px views so each run takes about a second.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "common/cache.h"
#include "extract/feature_net.h"
#include "extract_fixture.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::make_split;
using testing::run_extract_cmd;
using testing::shell_quote;
using testing::TempDir;

constexpr int kPerClass = 5;
constexpr int kCrops = 3;

class ExtractCli : public ::testing::Test {
 protected:
  void SetUp() override {
    carbike_ = testing::carbike_dir();
    if (carbike_.empty()) return;
    n_entries_ = make_split(carbike_, data_dir(), kPerClass, /*with_bad=*/true);
  }
  std::string data_dir() const { return tmp_ / "split"; }
  // The common part of a command line; `extra` adds or overrides flags.
  std::string args(const std::string& out, const std::string& extra = "") const {
    return fmt::format(
        "--data {} --out {} --weights random:3 --size 32 --crops {} --batch 8 "
        "--threads 2 --flip {}",
        shell_quote(data_dir()), shell_quote(out), kCrops, extra);
  }
  TempDir tmp_;
  std::string carbike_;
  size_t n_entries_ = 0;
};

TEST_F(ExtractCli, WritesEveryCropAndRecordsSkippedFiles) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  std::string out;
  ASSERT_EQ(run_extract_cmd(args(tmp_ / "cache"), &out), 0) << out;
  const size_t good = 2 * kPerClass, bad = testing::bad_files().size();

  // Summary, warnings naming each bad file, the ignored file, and the loud random-weights note.
  EXPECT_NE(
      out.find(fmt::format("{} images ({} skipped), {} records", good + bad, bad, good * kCrops)),
      std::string::npos)
      << out;
  for (const auto& f : testing::bad_files()) EXPECT_NE(out.find(f), std::string::npos) << f;
  EXPECT_NE(out.find("ignored 1 file"), std::string::npos) << out;
  EXPECT_NE(out.find("RANDOM WEIGHTS"), std::string::npos) << out;

  auto reader = CacheReader::open(tmp_ / "cache");
  const CacheMeta& m = reader->meta();
  EXPECT_TRUE(m.complete);
  EXPECT_EQ(m.records, good * kCrops);
  EXPECT_EQ(reader->record_count(), good * kCrops);
  EXPECT_EQ(m.classes, (std::vector<std::string>{"bicycle", "car"}));
  ASSERT_EQ(m.images.size(), n_entries_);
  EXPECT_TRUE(m.weights.random);
  EXPECT_EQ(m.weights.name, "random:3");
  EXPECT_EQ(m.preprocess.crops, kCrops);
  EXPECT_TRUE(m.preprocess.flip);
  EXPECT_EQ(m.dim, 25088u);
  EXPECT_FALSE(m.extra.value("warning", "").empty());

  // Skipped: exactly the bad files, each with a reason.
  std::set<std::string> skipped;
  for (const auto& s : m.skipped) {
    EXPECT_EQ(m.images.at(s.image).path, s.path);
    EXPECT_FALSE(s.reason.empty()) << s.path;
    skipped.insert(s.path);
  }
  EXPECT_EQ(skipped,
            std::set<std::string>(testing::bad_files().begin(), testing::bad_files().end()));

  // Every good image has crops 0..K-1 with its label and a box inside the 64 × 64 source;
  // payloads are finite.
  std::vector<int> crops_seen(m.images.size(), 0);
  bool any_flipped = false, any_unflipped = false;
  ReadTxn txn = reader->begin();
  txn.seek_first();
  RecordView v;
  while (txn.next(&v)) {
    const RecordHeader& h = v.header;
    ASSERT_LT(h.image, m.images.size());
    EXPECT_FALSE(skipped.count(m.images[h.image].path));
    EXPECT_EQ(h.crop, static_cast<uint32_t>(crops_seen[h.image]++));
    EXPECT_EQ(h.label, m.images[h.image].label);
    EXPECT_GT(h.box.w, 0);
    EXPECT_GT(h.box.h, 0);
    EXPECT_LE(h.box.x + h.box.w, 64);
    EXPECT_LE(h.box.y + h.box.h, 64);
    (h.box.flipped ? any_flipped : any_unflipped) = true;
    EXPECT_TRUE(std::all_of(v.data, v.data + m.dim, [](float f) { return std::isfinite(f); }));
  }
  for (size_t i = 0; i < m.images.size(); ++i) {
    EXPECT_EQ(crops_seen[i], skipped.count(m.images[i].path) ? 0 : kCrops) << m.images[i].path;
  }
  EXPECT_TRUE(any_flipped && any_unflipped) << "--flip should flip about half the crops";
}

TEST_F(ExtractCli, StrictMakesABadFileAnError) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  std::string out;
  int rc = run_extract_cmd(args(tmp_ / "cache", "--strict"), &out);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("b_empty.jpg"), std::string::npos) << out;
  EXPECT_EQ(out.find("Aborted"), std::string::npos) << out;
}

TEST_F(ExtractCli, EvalMakesOneWholeImageViewPerImage) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  std::string out;
  ASSERT_EQ(run_extract_cmd(args(tmp_ / "cache", "--eval"), &out), 0) << out;
  auto reader = CacheReader::open(tmp_ / "cache");
  EXPECT_TRUE(reader->meta().preprocess.eval);
  EXPECT_EQ(reader->meta().preprocess.crops, 1);
  EXPECT_FALSE(reader->meta().preprocess.flip);
  EXPECT_EQ(reader->record_count(), 2u * kPerClass);
  ReadTxn txn = reader->begin();
  txn.seek_first();
  RecordView v;
  while (txn.next(&v)) {
    EXPECT_EQ(v.header.crop, 0u);
    EXPECT_EQ(v.header.box.x, 0);
    EXPECT_EQ(v.header.box.y, 0);
    EXPECT_EQ(v.header.box.w, 64);
    EXPECT_EQ(v.header.box.h, 64);
    EXPECT_FALSE(v.header.box.flipped);
  }
}

TEST_F(ExtractCli, OutOfRangeFlagsAreUsageErrorsNamingTheFlag) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const std::string out_dir = tmp_ / "cache";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--crops 0", "--crops"},
      {"--scale 0,1", "--scale"},
      {"--scale 0.8,0.5", "--scale"},
      {"--scale 0.5,1.5", "--scale"},
      {"--scale 0.5", "--scale"},
      {"--ratio 0,1", "--ratio"},
      {"--ratio -1,2", "--ratio"},
      {"--ratio 2,1", "--ratio"},
      {"--batch 0", "--batch"},
      {"--size 16", "--size"},
      {"--threads 0", "--threads"},
      {"--device tpu", "--device"},
      {"--crops abc", "--crops"},
      {"--no-such-flag", "--no-such-flag"},
      {"--cut pool3", "--cut"},
      {"--cut pool4 --codec prepool-f32", "--codec"},
      {"--precision fp64", "--precision must be fp32, bf16 or fp16"},
      {"--precision fp16", "--precision fp16 needs --device cuda"},
  };
  for (const auto& [flag, name] : cases) {
    std::string out;
    EXPECT_EQ(run_extract_cmd(args(out_dir, flag), &out), 2) << flag << "\n" << out;
    EXPECT_NE(out.find(name), std::string::npos) << flag << "\n" << out;
  }
  std::string out;
  EXPECT_EQ(testing::run_command(shell_quote(testing::extract_bin()) + " --data x --out y", &out),
            2);
  EXPECT_NE(out.find("--weights"), std::string::npos) << out;
  EXPECT_EQ(run_extract_cmd("--help", &out), 0) << out;
  EXPECT_FALSE(std::filesystem::exists(out_dir)) << "a usage error must not create the cache";

  // Bad --data / --weights are clear errors, not crashes.
  EXPECT_EQ(run_extract_cmd(fmt::format("--data {} --out {} --weights random:1",
                                        shell_quote(tmp_ / "nope"), shell_quote(out_dir)),
                            &out),
            2)
      << out;
  EXPECT_NE(out.find("nope"), std::string::npos) << out;
  testing::write_file(tmp_ / "bad.pth", "garbage");
  EXPECT_EQ(run_extract_cmd(args(out_dir, "--weights " + shell_quote(tmp_ / "bad.pth")), &out), 1)
      << out;
  EXPECT_NE(out.find("bad.pth"), std::string::npos) << out;
}

TEST_F(ExtractCli, CudaWithoutCudaIsAClearError) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  std::string out;
  int rc = run_extract_cmd(args(tmp_ / "cache", "--device cuda"), &out);
  if (rc == 0) GTEST_SKIP() << "this LibTorch has CUDA";
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("CUDA not available in this LibTorch build"), std::string::npos) << out;
}

TEST_F(ExtractCli, DifferentSettingsAreRefusedUnlessOverwrite) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const std::string cache = tmp_ / "cache";
  std::string out;
  ASSERT_EQ(run_extract_cmd(args(cache), &out), 0) << out;
  // Same command again: the cache is complete and stays as it is.
  ASSERT_EQ(run_extract_cmd(args(cache), &out), 0) << out;
  EXPECT_NE(out.find("already complete"), std::string::npos) << out;

  std::vector<std::pair<std::string, std::string>> cases = {
      {"--seed 2", "preprocess.seed"},
      {"--crops 4", "preprocess.crops"},
      {"--size 48", "preprocess.size"},
      {"--scale 0.25,1", "preprocess.scale"},
      {"--weights random:4", "weights.name"},
      {"--eval", "preprocess."},  // the first differing key: crops (1 with --eval)
      {"--cut pool4", "cut: pool5 vs pool4"},
  };
  // Where LibTorch has no bfloat16 convolution, --precision bf16 is refused before the cache is
  // compared (Bf16CacheRecordsItsPrecision checks that); the metadata's comparison of precisions
  // has its unit test (test_cache_precision).
  if (cpu_runs_bf16_conv()) cases.push_back({"--precision bf16", "precision: fp32 vs bf16"});
  for (const auto& [flag, setting] : cases) {
    EXPECT_EQ(run_extract_cmd(args(cache, flag), &out), 1) << flag << "\n" << out;
    EXPECT_NE(out.find(setting), std::string::npos) << flag << "\n" << out;
    EXPECT_NE(out.find("--overwrite"), std::string::npos) << out;
  }
  EXPECT_EQ(read_cache_meta(cache).preprocess.seed, 1u) << "a refused run must not touch it";

  ASSERT_EQ(run_extract_cmd(args(cache, "--seed 2 --overwrite"), &out), 0) << out;
  auto reader = CacheReader::open(cache);
  EXPECT_EQ(reader->meta().preprocess.seed, 2u);
  EXPECT_EQ(reader->record_count(), 2u * kPerClass * kCrops);
}

// --precision bf16: the cache says so (metadata, featcache info) and its feature fingerprint is
// not an fp32 cache's, so a head trained on one is refused on the other. (The features' accuracy:
// tests/extract/test_precision.cpp.)
TEST_F(ExtractCli, Bf16CacheRecordsItsPrecision) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const std::string b16 = tmp_ / "b16", f32 = tmp_ / "f32";
  std::string out;
  if (!cpu_runs_bf16_conv()) {  // refused before anything is written
    EXPECT_EQ(run_extract_cmd(args(b16, "--precision bf16 --eval"), &out), 2) << out;
    EXPECT_NE(out.find("--precision bf16"), std::string::npos) << out;
    EXPECT_FALSE(std::filesystem::exists(b16)) << out;
    return;
  }
  ASSERT_EQ(run_extract_cmd(args(b16, "--precision bf16 --eval"), &out), 0) << out;
  ASSERT_EQ(run_extract_cmd(args(f32, "--eval"), &out), 0) << out;
  const CacheMeta mb = read_cache_meta(b16), mf = read_cache_meta(f32);
  EXPECT_EQ(mb.precision, "bf16");
  EXPECT_EQ(mf.precision, "fp32");
  EXPECT_NE(mb.feature_fingerprint(), mf.feature_fingerprint());
  ASSERT_EQ(testing::run_command(
                shell_quote(testing::bin_dir() + "/featcache") + " info " + shell_quote(b16), &out),
            0)
      << out;
  EXPECT_NE(out.find("\"precision\": \"bf16\""), std::string::npos) << out;
}

// --cut pool4: block 5's input maps (512 × 2 × 2 at 32 px) in a raw-f32 cache that featcache
// shows as such; train_head fine-tunes block 5 from such caches, but refuses this one by name:
// block 5 starts from the weights file, and random:SEED weights only extract can regenerate.
// (Fine-tuning itself: tests/finetune/test_finetune_run.cpp.)
TEST_F(ExtractCli, Pool4CutIsStoredShownAndNotTrainedAsAHead) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const std::string cache = tmp_ / "pool4";
  std::string out;
  ASSERT_EQ(run_extract_cmd(args(cache, "--cut pool4"), &out), 0) << out;
  auto reader = CacheReader::open(cache);
  EXPECT_EQ(reader->meta().cut, "pool4");
  EXPECT_EQ(reader->meta().cut_shape, (std::vector<int>{512, 2, 2}));
  EXPECT_EQ(reader->meta().dim, 2048u);
  EXPECT_EQ(reader->meta().codec, Codec::kRawF32);
  EXPECT_EQ(reader->record_count(), 2u * kPerClass * kCrops);

  ASSERT_EQ(
      testing::run_command(
          shell_quote(testing::bin_dir() + "/featcache") + " info " + shell_quote(cache), &out),
      0)
      << out;
  const nlohmann::json info = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_EQ(info["cut"], "pool4");
  EXPECT_EQ(info["cut_shape"], nlohmann::json::parse("[512, 2, 2]"));
  EXPECT_EQ(info["dim"], 2048);

  const std::string run = tmp_ / "run";
  EXPECT_EQ(testing::run_command(shell_quote(testing::bin_dir() + "/train_head") + " --train " +
                                     shell_quote(cache) + " --test " + shell_quote(cache) +
                                     " --out " + shell_quote(run) + " --epochs 1 --quiet",
                                 &out),
            2)
      << out;
  EXPECT_NE(out.find(cache), std::string::npos) << out;
  EXPECT_NE(out.find("random weights (random:"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(run + "/head.bin"));
}

}  // namespace
}  // namespace vggcache
