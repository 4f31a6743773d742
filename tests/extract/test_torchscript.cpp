// extract --backbone torchscript:FILE against PyTorch: torchvision's ResNet-18, VGG16 and ViT-B/16
// (random weights, seeded), traced and saved by Debian's python3-torch, run by extract on carbike64
// images; the cache's records must equal the eager PyTorch model's outputs on the very views
// extract prepared (dumped from prepare_chunk) within 1e-4 relative. Then the modules extract
// must refuse, each with a clear error naming the file and nothing written.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "common/cache.h"
#include "common/error.h"
#include "common/sha256.h"
#include "extract/feature_net.h"
#include "extract/pipeline.h"
#include "extract/torchscript_net.h"
#include "test_torchscript_models.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::shell_quote;
using testing::TempDir;
namespace fs = std::filesystem;

constexpr double kRelBound = 1e-4;  // the "within 1e-4 relative", per view

std::vector<float> read_f32(const std::string& path) {
  std::string bytes = testing::read_file(path);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// max |a - b| over a view, relative to max |b| (elementwise relative error means nothing for
// values near zero).
double max_rel_diff(const float* a, const float* b, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

// Only a place for prepare_chunk() to put the views: the module itself runs in the tool (loading
// vit_b_16's 330 MB here too would only cost time).
class ViewsOnly : public FeatureNet {
 public:
  uint32_t dim() const override { return 0; }
  std::string device() const override { return "cpu"; }
  HostBuffer alloc_input(size_t floats) override {
    auto v = std::make_shared<std::vector<float>>(floats);
    return HostBuffer{v->data(), floats, v};
  }
  void forward(const float*, int, int, float*) override { ADD_FAILURE() << "no network here"; }
  std::vector<int> prepool_shape(int) const override { return {}; }
  void forward_prepool(const float*, int, int, float*) override { ADD_FAILURE(); }
};

// `model` traced at `size` px, extracted by the tool from `per_class` test images per class in
// the eval view, against the eager model on the views extract prepared.
void expect_matches_pytorch(const std::string& model, int size, int per_class) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const std::string pt = testing::torchscript_model(model, size);
  TempDir tmp;
  const std::string split = tmp / "split";
  testing::copy_carbike_split(carbike, "test", split, per_class);

  // extract's own views of those images (sorted, the cache's order), dumped for PyTorch.
  ExtractParams p;
  p.data_dir = split;
  p.eval = true;
  p.size = size;
  p.threads = 2;
  p.backbone = "torchscript";
  FolderScan scan = scan_image_folder(split);
  ViewsOnly net;
  PreparedChunk c = prepare_chunk(p, scan, 0, static_cast<uint32_t>(scan.files.size()), net);
  ASSERT_EQ(c.views.size(), scan.files.size());
  const size_t view = 3ull * size * size;
  testing::write_file(tmp / "views.f32", std::string(reinterpret_cast<const char*>(c.input.data),
                                                     c.views.size() * view * sizeof(float)));
  std::string out;
  ASSERT_EQ(testing::run_command(
                fmt::format("{} {} ref {} {} --views {} --size {}", testing::python(),
                            shell_quote(testing::ts_script()), model, shell_quote(tmp / "ref.f32"),
                            shell_quote(tmp / "views.f32"), size),
                &out),
            0)
      << out;
  const std::vector<float> want = read_f32(tmp / "ref.f32");
  ASSERT_EQ(want.size() % c.views.size(), 0u);
  const size_t dim = want.size() / c.views.size();

  const testing::ToolResult r = testing::run_tool(
      "extract", fmt::format("--backbone torchscript:{} --data {} --out {} --eval --size {} "
                             "--threads 2 --batch 3 --quiet",
                             shell_quote(pt), shell_quote(split), shell_quote(tmp / "c"), size));
  ASSERT_EQ(r.rc, 0) << r.output;
  auto reader = CacheReader::open(tmp / "c");
  const CacheMeta& m = reader->meta();
  EXPECT_EQ(m.backbone, "torchscript");
  EXPECT_EQ(m.weights.name, "model.pt");
  EXPECT_EQ(m.weights.sha256, sha256_file(pt));
  EXPECT_FALSE(m.weights.random);
  EXPECT_EQ(m.codec, Codec::kRawF32);
  EXPECT_EQ(m.dim, dim);
  EXPECT_EQ(m.preprocess.size, size);
  ASSERT_EQ(reader->record_count(), c.views.size());
  ReadTxn txn = reader->begin();
  txn.seek_first();
  RecordView v;
  size_t i = 0;
  double worst = 0;
  while (txn.next(&v)) {
    const double d = max_rel_diff(v.data, want.data() + i * dim, dim);
    EXPECT_LE(d, kRelBound) << scan.files[i].rel_path;
    worst = std::max(worst, d);
    ++i;
  }
  testing::report_numerics("extract --backbone torchscript (" + model + ") vs PyTorch", worst,
                           kRelBound);
}

TEST(TorchScript, ResNet18MatchesPyTorch) {
  expect_matches_pytorch("resnet18", 64, 3);
}

TEST(TorchScript, Vgg16MatchesPyTorch) {
  expect_matches_pytorch("vgg16", 64, 2);
}

// ViT-B/16 at its 224 px (its position embedding fixes the size): one image per class.
TEST(TorchScript, VitB16MatchesPyTorch) {
  expect_matches_pytorch("vit_b_16", 224, 1);
}

// A module extract cannot use: `extract` fails naming the file and `reason`, and writes nothing.
void expect_refused(const std::string& file, const std::string& reason) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  TempDir tmp;
  testing::copy_carbike_split(carbike, "test", tmp / "split", 3);
  const testing::ToolResult r = testing::run_tool(
      "extract",
      fmt::format("--backbone torchscript:{} --data {} --out {} --size 64 --crops 2 "
                  "--threads 2 --batch 4 --quiet",
                  shell_quote(file), shell_quote(tmp / "split"), shell_quote(tmp / "c")));
  EXPECT_EQ(r.rc, 1) << r.output;  // an Error, not a crash (a signal gives 128 + N)
  EXPECT_NE(r.output.find(file), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(reason), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "c")) << "a refused module left a cache";
}

TEST(TorchScript, TupleOutputIsRefused) {
  expect_refused(testing::bad_torchscript_models() + "/tuple.pt", "returns a Tuple, not a tensor");
}

TEST(TorchScript, DictOutputIsRefused) {
  expect_refused(testing::bad_torchscript_models() + "/dict.pt",
                 "returns a GenericDict, not a tensor");
}

TEST(TorchScript, NonFloatTensorIsRefused) {
  expect_refused(testing::bad_torchscript_models() + "/long.pt",
                 "returns a Long tensor, not floating point");
}

TEST(TorchScript, OutputWithoutBatchDimensionIsRefused) {
  expect_refused(testing::bad_torchscript_models() + "/batchdim.pt",
                 "the first dimension must be the batch");
}

TEST(TorchScript, LengthThatFollowsTheBatchIsRefused) {
  expect_refused(testing::bad_torchscript_models() + "/per_batch.pt",
                 "output length changes with the batch: 1 floats per view for 1 view, 4 for 4 "
                 "views");
}

TEST(TorchScript, FileFromNewerPyTorchIsRefusedWithLibTorchVersion) {
  expect_refused(testing::bad_torchscript_models() + "/newer.pt",
                 fmt::format("LibTorch {} cannot load it as a TorchScript module", TORCH_VERSION));
}

TEST(TorchScript, StateDictIsNotTorchScript) {
  expect_refused(testing::bad_torchscript_models() + "/state_dict.pt",
                 "cannot load it as a TorchScript module");
}

TEST(TorchScript, TextFileAndMissingFileAreRefused) {
  TempDir tmp;
  testing::write_file(tmp / "notes.pt", "not a model\n");
  expect_refused(tmp / "notes.pt", "cannot load it as a TorchScript module");
  expect_refused(tmp / "missing.pt", "cannot open");
}

// A length that changes later in the run (here with the values) stops it at that batch: the
// network refuses to write a vector of another length.
TEST(TorchScript, LengthChangeBetweenBatchesIsAnError) {
  auto net = make_torchscript_net(
      NetOptions{testing::bad_torchscript_models() + "/content.pt", "cpu", 1}, nullptr);
  auto* ts = dynamic_cast<TorchScriptNet*>(net.get());
  ASSERT_NE(ts, nullptr);
  constexpr int kSide = 32, kViews = 2;
  std::vector<float> up(kViews * 3 * kSide * kSide, 1.0f), down(up.size(), -1.0f);
  EXPECT_EQ(ts->learn_dim(up.data(), kViews, kSide), 3u);  // the channel means
  std::vector<float> out(kViews * 3);
  net->forward(up.data(), kViews, kSide, out.data());
  EXPECT_EQ(out[0], 1.0f);
  try {
    net->forward(down.data(), kViews, kSide, out.data());
    FAIL() << "a length change was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadWeights);
    EXPECT_NE(std::string(e.what()).find("content.pt: output length changed between batches: 3 "
                                         "floats per view, then 5"),
              std::string::npos)
        << e.what();
  }
}

TEST(TorchScript, WeightsFlagAndPrecisionAreRefused) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  const std::string pt = testing::torchscript_model("resnet18", 64);
  TempDir tmp;
  testing::copy_carbike_split(carbike, "test", tmp / "split", 1);
  const std::string base =
      fmt::format("--backbone torchscript:{} --data {} --out {} --quiet", shell_quote(pt),
                  shell_quote(tmp / "split"), shell_quote(tmp / "c"));
  testing::ToolResult r = testing::run_tool("extract", base + " --weights random:1");
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("--weights is not used with --backbone torchscript:FILE"),
            std::string::npos)
      << r.output;
  r = testing::run_tool("extract", base + " --precision bf16");
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("--precision bf16 is for vgg16 and resnet50"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(tmp / "c"));
}

}  // namespace
}  // namespace vggcache
