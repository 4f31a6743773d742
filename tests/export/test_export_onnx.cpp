// vggcache-export --format onnx end to end on a small carbike64 split (features from random:1
// weights, 64 px): Debian's python3-onnx checks the model (full check, names, shapes, opset) and
// prepares the inputs from the model's metadata alone; OpenCV's DNN module, an ONNX runtime
// independent of vggcache and of PyTorch, runs it and gives predict's probabilities within 1e-4;
// the metadata names the weights, the head and the preprocessing. A head with a fine-tuned block 5
// exports its tuned convs.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

#include "common/sha256.h"
#include "export/export_fixture.h"
#include "test_util.h"

namespace vggcache {
namespace {

using namespace export_test;
constexpr double kTolerance = 1e-4;  // the issue's: OpenCV DNN on the ONNX model vs predict

std::vector<float> read_floats(const std::string& path) {
  const std::string bytes = testing::read_file(path);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(v.data()));
  return v;
}

std::string export_onnx(Data& d, const std::string& head, const std::string& name) {
  const std::string model = d.dir + "/" + name + ".onnx";
  must(tool("vggcache-export", "--format onnx --weights " + shell_quote(d.weights) + " --head " +
                                   shell_quote(head) + " --out " + shell_quote(model) + " --quiet"),
       "vggcache-export --format onnx");
  return model;
}

// predict on the test split; the ONNX export checked and its inputs prepared by python3-onnx and
// torchvision; OpenCV DNN on those inputs. Returns the largest difference of any probability.
double onnx_vs_predict(Data& d, const std::string& head, const std::string& name) {
  const std::string pred = d.predict(head, name);
  const std::string model = export_onnx(d, head, name);
  std::vector<std::string> paths;
  auto want = read_probs(pred, &paths);
  const std::string inputs = d.dir + "/" + name + ".f32";
  std::string cmd = testing::python() + " " +
                    shell_quote(testing::source_dir() + "/tests/py/ref_export_onnx.py") + " " +
                    shell_quote(model) + " " + shell_quote(inputs);
  for (const auto& p : paths) cmd += " " + shell_quote(p);
  std::string out;
  int rc = testing::run_command(cmd, &out);
  EXPECT_EQ(rc, 0) << out;
  if (rc != 0) return INFINITY;

  constexpr int kSize = 64;
  std::vector<float> x = read_floats(inputs);
  const int n = static_cast<int>(paths.size());
  EXPECT_EQ(x.size(), size_t(n) * 3 * kSize * kSize);
  if (x.size() != size_t(n) * 3 * kSize * kSize) return INFINITY;
  cv::setNumThreads(2);
  cv::dnn::Net net = cv::dnn::readNetFromONNX(model);
  const int shape[] = {n, 3, kSize, kSize};
  net.setInput(cv::Mat(4, shape, CV_32F, x.data()), "input");
  cv::Mat y = net.forward("probabilities");
  EXPECT_EQ(y.size[0], n);
  const int outputs = y.total() / n;
  Probs got;
  for (int i = 0; i < n; ++i) {
    std::vector<double>& p = got[paths[i]];
    for (int c = 0; c < outputs; ++c) p.push_back(y.ptr<float>()[i * outputs + c]);
    if (outputs == 1) p = {1 - p[0], p[0]};
  }
  const Comparison r = compare_probs(
      want, got, [](const std::string&, size_t) { return kTolerance; }, "OpenCV DNN");
  testing::report_numerics("OpenCV DNN on the ONNX export " + name + " vs predict", r.worst,
                           kTolerance);
  return r.worst;
}

TEST(ExportOnnx, OpenCvDnnGivesPredictsProbabilities) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  Data& d = two_classes(carbike);
  onnx_vs_predict(d, d.head("plain", ""), "plain");
}

TEST(ExportOnnx, StandardisedSoftmaxHeadOfThreeClasses) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  Data& d = three_classes(carbike);
  onnx_vs_predict(d, d.head("std3", "--standardize"), "std3");
}

// A head fine-tuned with block 5: its tuned convs are the initializers features.24/26/28, and the
// metadata says so.
TEST(ExportOnnx, FineTunedBlock5) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  Data& d = file_weights(carbike);
  const std::string head = d.tuned_head("tuned", "");
  onnx_vs_predict(d, head, "tuned");
  // A model with the file's conv5 would be off by this much: far above the tolerance.
  const double gap = d.untuned_gap(head, d.predict_csv("tuned"));
  EXPECT_GT(gap, 10 * kTolerance);
  testing::report_numerics("block 5's tuning, largest probability change (should be large)", gap,
                           10 * kTolerance);
  onnx::ModelProto m;
  std::ifstream in(d.dir + "/tuned.onnx", std::ios::binary);
  ASSERT_TRUE(m.ParseFromIstream(&in));
  bool noted = false;
  for (const auto& e : m.metadata_props())
    noted |= e.key() == "block5" && e.value().find("features.24/26/28") != std::string::npos;
  EXPECT_TRUE(noted) << "no block5 entry in metadata_props";
}

// A linear probe (hidden 0): Flatten, one Gemm, Sigmoid.
TEST(ExportOnnx, LinearProbe) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  Data& d = two_classes(carbike);
  onnx_vs_predict(d, d.head("probe", "--hidden 0 --standardize"), "probe");
}

TEST(ExportOnnx, MetadataNamesWeightsHeadAndPreprocessing) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  Data& d = two_classes(carbike);
  const std::string head = d.head("std", "--standardize");
  const std::string model = export_onnx(d, head, "meta");
  EXPECT_FALSE(fs::exists(model + ".json")) << "ONNX keeps its facts inside the model";
  onnx::ModelProto m;
  ASSERT_TRUE(m.ParseFromString(testing::read_file(model)));
  std::map<std::string, std::string> props;
  for (const auto& p : m.metadata_props()) props[p.key()] = p.value();
  EXPECT_EQ(m.producer_name(), "vggcache");
  EXPECT_EQ(props["vggcache_version"], VGGCACHE_VERSION);
  EXPECT_EQ(props["weights.name"], "random:1");
  EXPECT_EQ(props["weights.random"], "true");
  EXPECT_EQ(props["head.sha256"], sha256_file(head));
  EXPECT_EQ(props["head.name"], "head.bin");
  EXPECT_EQ(props["classes"], R"(["bicycle","car"])");
  EXPECT_EQ(props["preprocessing.size"], "64");
  EXPECT_EQ(nlohmann::json::parse(props["preprocessing.mean"]),
            nlohmann::json::parse("[0.485, 0.456, 0.406]"));
  EXPECT_EQ(nlohmann::json::parse(props["preprocessing.std"]),
            nlohmann::json::parse("[0.229, 0.224, 0.225]"));
  EXPECT_NE(props["output"].find("'car'"), std::string::npos) << props["output"];
  EXPECT_EQ(nlohmann::json::parse(props["head"])["standardize"], true);
  // At 64 px pool5 is 2×2: classifier.0 takes 512·2·2 inputs once the 7×7 pooling is folded in.
  for (const auto& t : m.graph().initializer())
    if (t.name() == "classifier.0.weight") EXPECT_EQ(t.dims(1), 512 * 2 * 2);
}

}  // namespace
}  // namespace vggcache
