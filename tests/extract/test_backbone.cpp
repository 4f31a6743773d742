// --backbone through the tools: the flag's checks, the backbone in the cache metadata and the
// feature fingerprint (vgg16 caches keep theirs), resume/merge/train_head/predict/export refusing
// another backbone by name, and carbike64 end to end (extract → train_head → report → predict)
// on ResNet-50 and on a TorchScript ResNet-18, with any feature length.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/cache.h"
#include "common/error.h"
#include "test_torchscript_models.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::run_tool;
using testing::shell_quote;
using testing::TempDir;
using testing::ToolResult;
namespace fs = std::filesystem;

void expect_has(const ToolResult& r, const std::string& text) {
  EXPECT_NE(r.output.find(text), std::string::npos) << "missing: " << text << "\n" << r.output;
}

CacheMeta meta(const std::string& backbone) {
  CacheMeta m;
  m.tool_version = "test";
  m.classes = {"bicycle", "car"};
  m.weights = {"random:1", "", true};
  m.backbone = backbone;
  if (backbone != "vgg16") m.dim = m.payload_floats = 2048;
  return m;
}

TEST(Backbone, Vgg16KeepsItsJsonAndOldCachesReadAsVgg16) {
  const nlohmann::json j = meta("vgg16").to_json();
  EXPECT_FALSE(j.contains("backbone"));
  EXPECT_EQ(CacheMeta::from_json(j).backbone, "vgg16");
}

TEST(Backbone, RoundTripsAndFingerprintsApart) {
  for (const char* b : {"resnet50", "torchscript"}) {
    const CacheMeta m = meta(b);
    const nlohmann::json j = m.to_json();
    EXPECT_EQ(j["backbone"], b);
    const CacheMeta back = CacheMeta::from_json(j);
    EXPECT_EQ(back.backbone, b);
    EXPECT_EQ(back.to_json(), j);
    CacheMeta same_dim = meta("vgg16");
    same_dim.dim = same_dim.payload_floats = 2048;
    EXPECT_NE(m.feature_fingerprint(), same_dim.feature_fingerprint()) << b;
  }
  EXPECT_NE(meta("resnet50").feature_fingerprint(), meta("torchscript").feature_fingerprint());
  EXPECT_EQ(CacheMeta::first_difference(meta("vgg16"), meta("resnet50")),
            "backbone: vgg16 vs resnet50");
}

TEST(Backbone, UnknownBackboneAndVggOnlyCodecsAreRefusedOnRead) {
  nlohmann::json j = meta("resnet50").to_json();
  j["backbone"] = "alexnet";
  try {
    CacheMeta::from_json(j);
    FAIL() << "backbone alexnet accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kSchema);
    EXPECT_NE(std::string(e.what()).find("backbone 'alexnet'"), std::string::npos) << e.what();
  }
  CacheMeta m = meta("resnet50");
  m.codec = Codec::kPrepoolF32;
  m.prepool_shape = {512, 2, 2};
  m.dim = 25088;
  m.payload_floats = 2048;
  try {
    CacheMeta::from_json(m.to_json());
    FAIL() << "a prepool-f32 resnet50 cache accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
    EXPECT_NE(std::string(e.what()).find("a resnet50 cache needs codec raw-f32"), std::string::npos)
        << e.what();
  }
}

TEST(Backbone, ExtractFlagChecks) {
  TempDir tmp;
  fs::create_directories(tmp / "split/a");
  const std::string base =
      fmt::format("--data {} --out {} --quiet", shell_quote(tmp / "split"), shell_quote(tmp / "c"));
  struct Case {
    std::string args, message;
  };
  for (const Case& c : std::vector<Case>{
           {"--backbone alexnet --weights random:1",
            "--backbone must be vgg16, resnet50 or torchscript:FILE (got 'alexnet')"},
           {"--backbone torchscript: ", "--backbone must be vgg16, resnet50 or torchscript:FILE"},
           {"", "--weights FILE|random:SEED is required with --backbone vgg16"},
           {"--backbone resnet50",
            "--weights FILE|random:SEED is required with --backbone "
            "resnet50"},
           {"--backbone resnet50 --weights random:1 --codec prepool-f32",
            "--codec prepool-f32 is VGG16's pre-pool map; --backbone resnet50 records are "
            "raw-f32"},
           {"--backbone resnet50 --weights random:1 --cut pool4",
            "--cut pool4 is a VGG16 layer (for fine-tuning its block 5); --backbone resnet50 "
            "gives its output features only"},
       }) {
    const ToolResult r = run_tool("extract", base + " " + c.args);
    EXPECT_EQ(r.rc, 2) << c.args << "\n" << r.output;
    expect_has(r, c.message);
  }
  EXPECT_FALSE(fs::exists(tmp / "c"));
}

constexpr int kTrainPerClass = 12, kTestPerClass = 6;

// Built once for the suite: a small carbike64 train/test split and the traced ResNet-18.
struct World {
  TempDir tmp;
  std::string train = tmp / "train", test = tmp / "test";
  std::string resnet18;
  explicit World(const std::string& carbike) {
    testing::copy_carbike_split(carbike, "train", train, kTrainPerClass);
    testing::copy_carbike_split(carbike, "test", test, kTestPerClass);
    resnet18 = testing::torchscript_model("resnet18", 64);
  }
};
World& world(const std::string& carbike) {
  static std::unique_ptr<World> w;
  if (!w) w = std::make_unique<World>(carbike);
  return *w;
}

std::string extract_args(const std::string& backbone, const std::string& split,
                         const std::string& out, const std::string& more) {
  return fmt::format("{} --data {} --out {} --size 64 --threads 2 --batch 8 --quiet {}", backbone,
                     shell_quote(split), shell_quote(out), more);
}

std::string info(const std::string& cache) {
  const ToolResult r = run_tool("featcache", "info " + shell_quote(cache));
  EXPECT_EQ(r.rc, 0) << r.output;
  return r.output;
}

// A vgg16 cache's fingerprint is the one it had before backbones existed (made by the build before
// them on the same settings: random:1 weights, 64 px, ImageNet normalisation).
TEST(Backbone, Vgg16FingerprintIsUnchanged) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  TempDir tmp;
  testing::copy_carbike_split(carbike, "test", tmp / "split", 1);
  const ToolResult r =
      run_tool("extract", extract_args("--weights random:1", tmp / "split", tmp / "c", "--eval"));
  ASSERT_EQ(r.rc, 0) << r.output;
  const std::string out = info(tmp / "c");
  EXPECT_NE(out.find("\"feature_fingerprint\": \"540cedff8d17a9d2\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"backbone\": \"vgg16\""), std::string::npos) << out;
}

// Resume, merge and the train/test pairing refuse another backbone, naming it.
TEST(Backbone, ResumeMergeAndTrainHeadRefuseAnotherBackbone) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  World& w = world(carbike);
  TempDir tmp;
  const std::string ts = "--backbone torchscript:" + shell_quote(w.resnet18);
  ASSERT_EQ(
      run_tool("extract", extract_args("--weights random:1", w.test, tmp / "vgg", "--eval")).rc, 0);
  ToolResult r = run_tool("extract", extract_args(ts, w.test, tmp / "vgg", "--eval"));
  EXPECT_EQ(r.rc, 1) << r.output;
  expect_has(r,
             "existing cache was made with different settings (backbone: vgg16 vs "
             "torchscript, stored vs requested)");

  // Shards of one split, one per backbone: merge names the backbone.
  ASSERT_EQ(run_tool("extract",
                     extract_args("--weights random:1", w.test, tmp / "s0", "--eval --shard 0/2"))
                .rc,
            0);
  r = run_tool("extract", extract_args(ts, w.test, tmp / "s1", "--eval --shard 1/2"));
  ASSERT_EQ(r.rc, 0) << r.output;
  r = run_tool("featcache", fmt::format("merge --quiet --out {} {} {}", shell_quote(tmp / "m"),
                                        shell_quote(tmp / "s0"), shell_quote(tmp / "s1")));
  EXPECT_NE(r.rc, 0) << r.output;
  expect_has(r, "backbone: vgg16 vs torchscript");
  // Both shards on the TorchScript backbone merge into its cache.
  ASSERT_EQ(run_tool("extract", extract_args(ts, w.test, tmp / "t0", "--eval --shard 0/2")).rc, 0);
  r = run_tool("featcache", fmt::format("merge --quiet --out {} {} {}", shell_quote(tmp / "tm"),
                                        shell_quote(tmp / "t0"), shell_quote(tmp / "s1")));
  ASSERT_EQ(r.rc, 0) << r.output;
  auto merged = CacheReader::open(tmp / "tm");
  EXPECT_EQ(merged->meta().backbone, "torchscript");
  EXPECT_EQ(merged->meta().dim, 512u);
  EXPECT_EQ(merged->record_count(), 2u * kTestPerClass);
  EXPECT_EQ(run_tool("featcache", "verify " + shell_quote(tmp / "tm")).rc, 0);

  // A vgg16 training cache with a TorchScript test cache.
  ASSERT_EQ(run_tool("extract", extract_args(ts, w.test, tmp / "ts_test", "--eval")).rc, 0);
  r = run_tool("train_head", fmt::format("--train {} --test {} --out {} --epochs 1 --threads 2",
                                         shell_quote(tmp / "vgg"), shell_quote(tmp / "ts_test"),
                                         shell_quote(tmp / "run")));
  EXPECT_NE(r.rc, 0) << r.output;
  expect_has(r, "(backbone: vgg16 vs torchscript)");
}

// predict's CSV (path,class,probability,p_bicycle,p_car) as path → p_car.
std::map<std::string, double> predict_p_car(const std::string& csv) {
  std::map<std::string, double> out;
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "path,class,probability,p_bicycle,p_car");
  while (std::getline(in, line))
    out[line.substr(0, line.find(','))] = std::stod(line.substr(line.rfind(',') + 1));
  return out;
}

// train_head's predictions.csv (image,path,label,predicted,p_bicycle,p_car) as path → p_car.
std::map<std::string, double> run_p_car(const std::string& csv) {
  std::map<std::string, double> out;
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "image,path,label,predicted,p_bicycle,p_car");
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    out[f[1]] = std::stod(f[5]);
  }
  return out;
}

// extract (train crops and test eval view) → train_head → report → predict on `backbone`; the
// run directory holds what a VGG16 run's does, predict gives train_head's probabilities.
void end_to_end(const std::string& backbone, uint32_t dim, const std::string& predict_flags) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  World& w = world(carbike);
  TempDir tmp;
  ToolResult r = run_tool("extract", extract_args(backbone, w.train, tmp / "train", "--crops 2"));
  if (r.output.find("is not built yet") != std::string::npos)
    GTEST_SKIP() << "this build's backbone is a stub: " << r.output;
  ASSERT_EQ(r.rc, 0) << r.output;
  r = run_tool("extract", extract_args(backbone, w.test, tmp / "test", "--eval"));
  ASSERT_EQ(r.rc, 0) << r.output;
  auto train = CacheReader::open(tmp / "train");
  auto test = CacheReader::open(tmp / "test");
  EXPECT_EQ(train->record_count(), 2u * kTrainPerClass * 2);
  EXPECT_EQ(test->record_count(), 2u * kTestPerClass);
  EXPECT_EQ(train->meta().dim, dim);
  EXPECT_EQ(train->meta().codec, Codec::kRawF32);  // --codec auto: raw-f32 off VGG16
  const std::string name = train->meta().backbone;
  EXPECT_NE(info(tmp / "train").find("\"backbone\": \"" + name + "\""), std::string::npos);

  const std::string run = tmp / "run";
  r = run_tool("train_head", fmt::format("--train {} --test {} --out {} --epochs 2 --lr 1e-5 "
                                         "--standardize --threads 2 --quiet",
                                         shell_quote(tmp / "train"), shell_quote(tmp / "test"),
                                         shell_quote(run)));
  ASSERT_EQ(r.rc, 0) << r.output;
  expect_has(r, fmt::format("dim {}", dim));
  expect_has(r, fmt::format("compact first layer off: {} features", name));
  for (const char* f : {"head.bin", "summary.json", "metrics.jsonl", "predictions.csv",
                        "report.html", "confusion_matrix.png", "test_grid.png"})
    EXPECT_TRUE(fs::exists(fs::path(run) / f)) << f;
  const std::string html = testing::read_file(run + "/report.html");
  EXPECT_NE(html.find("<tr><th>backbone</th><td class=\"mono\">" + name + "</td></tr>"),
            std::string::npos);

  const std::string csv = tmp / "pred.csv";
  r = run_tool("predict",
               fmt::format("{} --head {} --out {} --threads 2 --quiet {}", predict_flags,
                           shell_quote(run + "/head.bin"), shell_quote(csv), shell_quote(w.test)));
  ASSERT_EQ(r.rc, 0) << r.output;
  const auto got = predict_p_car(testing::read_file(csv));
  const auto want = run_p_car(testing::read_file(run + "/predictions.csv"));
  ASSERT_EQ(got.size(), 2u * kTestPerClass);
  ASSERT_EQ(want.size(), 2u * kTestPerClass);
  double worst = 0;
  for (const auto& [path, p] : want) {
    auto it = got.find(w.test + "/" + path);
    ASSERT_NE(it, got.end()) << path;
    worst = std::max(worst, std::abs(it->second - p));
  }
  EXPECT_LE(worst, 1e-5);
  testing::report_numerics("predict vs train_head on " + name, worst, 1e-5);

  // export builds torchvision's vgg16 around a head: another backbone's head is refused.
  r = run_tool("vggcache-export",
               fmt::format("--head {} --weights random:1 --out {}", shell_quote(run + "/head.bin"),
                           shell_quote(tmp / "m.pth")));
  EXPECT_EQ(r.rc, 2) << r.output;
  expect_has(r, "was trained on " + name + " features; export builds torchvision's vgg16");
  EXPECT_FALSE(fs::exists(tmp / "m.pth"));
}

TEST(Backbone, Carbike64EndToEndResNet50) {
  end_to_end("--backbone resnet50 --weights random:1", 2048, "--weights random:1");
}

TEST(Backbone, Carbike64EndToEndTorchScript) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  World& w = world(carbike);
  end_to_end("--backbone torchscript:" + shell_quote(w.resnet18), 512,
             "--backbone torchscript:" + shell_quote(w.resnet18));
}

// predict builds the head's backbone: a TorchScript head needs its file, and another backbone or
// another file is refused by name.
TEST(Backbone, PredictNeedsTheHeadsBackbone) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  World& w = world(carbike);
  TempDir tmp;
  const std::string ts = "--backbone torchscript:" + shell_quote(w.resnet18);
  ASSERT_EQ(run_tool("extract", extract_args(ts, w.train, tmp / "train", "--crops 1")).rc, 0);
  ASSERT_EQ(run_tool("extract", extract_args(ts, w.test, tmp / "test", "--eval")).rc, 0);
  ToolResult r = run_tool(
      "train_head",
      fmt::format("--train {} --test {} --out {} --epochs 1 --threads 2 --quiet",
                  shell_quote(tmp / "train"), shell_quote(tmp / "test"), shell_quote(tmp / "run")));
  ASSERT_EQ(r.rc, 0) << r.output;
  const std::string head = shell_quote(tmp / "run/head.bin");
  const std::string img = shell_quote(w.test + "/car/car_0000.jpg");
  r = run_tool("predict", "--weights random:1 --head " + head + " " + img);
  EXPECT_EQ(r.rc, 2) << r.output;
  expect_has(r,
             "was trained on the features of TorchScript module model.pt: give that file as "
             "--backbone torchscript:FILE");
  r = run_tool("predict", "--backbone vgg16 --weights random:1 --head " + head + " " + img);
  EXPECT_EQ(r.rc, 1) << r.output;
  expect_has(r, "was trained on torchscript features; --backbone vgg16 is another network");
  const std::string other = testing::bad_torchscript_models() + "/good.pt";
  r = run_tool("predict",
               "--backbone torchscript:" + shell_quote(other) + " --head " + head + " " + img);
  EXPECT_EQ(r.rc, 1) << r.output;
  expect_has(r, "--backbone torchscript:" + other + " are not the weights head");
}

}  // namespace
}  // namespace vggcache
