// The ResNet-50 backbone (extract/resnet50.cpp) against torchvision's resnet50 on the same inputs
// and weights (tests/py/ref_resnet50.py): both .pth formats, three input sizes, the random:SEED
// init parameter for parameter, malformed and foreign weight files, the layers it does not have,
// and `make -f Makefile.data weights BACKBONE=resnet50`. Driven through FeatureNet only, as the
// pipeline drives it.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <stdexcept>

#include "common/cache_meta.h"
#include "common/error.h"
#include "common/sha256.h"
#include "extract/feature_net.h"
#include "extract/resnet50.h"
#include "random_vgg16.h"
#include "test_util.h"
#include "weights/pth_writer.h"

namespace vggcache {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

constexpr int kDim = 2048;

// How far our float32 features may be from torchvision's, relative to the largest feature of the
// view. Each of the 53 convolutions sums k²·C_in products, so it carries a relative rounding
// difference of about 2·√(k²·C_in)·u (testing::rounding_bound); ReLU, max-pooling, the residual
// additions and the global average do not amplify one. Added up as if every layer's rounding
// pushed the same way they reach 1.7e-4; they are independent (other sums, other kernels), so
// like the steps of testing::rounding_bound they add as a random walk, in quadrature: 2.7e-5.
// Folding each batch norm into its convolution adds one rounding per weight (u, negligible).
// 1e-4, the bound, leaves the quadrature estimate a 3.6× margin.
double features_bound() {
  double sum2 = 0;
  auto conv = [&](double terms) { sum2 += std::pow(testing::rounding_bound(terms), 2); };
  conv(49 * 3);
  int in = 64;
  const int planes[] = {64, 128, 256, 512}, blocks[] = {3, 4, 6, 3};
  for (int l = 0; l < 4; ++l) {
    for (int b = 0; b < blocks[l]; ++b) {
      conv(in);
      conv(9.0 * planes[l]);
      conv(planes[l]);
      if (b == 0) conv(in);  // downsample
      in = planes[l] * 4;
    }
  }
  const double quadrature = std::sqrt(sum2);
  EXPECT_LT(quadrature, 3e-5);
  return 1e-4;
}

std::vector<float> read_f32(const std::string& path) {
  std::string bytes = testing::read_file(path);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// max |a - b| over a view's features relative to max |b| (per-element relative error means
// nothing for the many features near zero after ReLU).
double max_rel_diff(const float* a, const float* b, int64_t n) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

ErrorKind kind_of(const std::function<void()>& f, std::string* message) {
  try {
    f();
  } catch (const Error& e) {
    *message = e.what();
    return e.kind();
  }
  ADD_FAILURE() << "no vggcache::Error thrown";
  return ErrorKind::kIo;
}

std::unique_ptr<FeatureNet> net_for(const std::string& weights, WeightsIdentity* id = nullptr) {
  return make_resnet50_net(NetOptions{weights, "cpu", 2}, id);
}

std::vector<float> run(FeatureNet& net, const std::vector<float>& in, int size) {
  const int n = static_cast<int>(in.size() / (3 * size * size));
  std::vector<float> out(static_cast<size_t>(n) * kDim);
  net.forward(in.data(), n, size, out.data());
  return out;
}

class ResNet50 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dir_ = new std::string(reference_dir()); }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  // torchvision's files and outputs, made once per build tree (about 10 s of Python) and keyed
  // on the script; published with an atomic rename so concurrent ctest processes never see half.
  static std::string reference_dir() {
    const std::string script = testing::source_dir() + "/tests/py/ref_resnet50.py";
    const std::string key = testing::read_file(script);
    const fs::path final_dir = fs::path(testing::bin_dir()).parent_path() / "testdata" /
                               ("resnet50-ref-" + sha256_hex(key.data(), key.size()).substr(0, 16));
    if (fs::exists(final_dir / "complete")) return final_dir.string();
    fs::create_directories(final_dir.parent_path());
    std::string tmpl = final_dir.string() + ".tmp-XXXXXX";
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    std::string out;
    if (testing::run_command(fmt::format("{} {} {}", testing::python(),
                                         testing::shell_quote(script), testing::shell_quote(tmpl)),
                             &out) != 0) {
      ADD_FAILURE() << "ref_resnet50.py failed:\n" << out;
      return tmpl;
    }
    testing::write_file(tmpl + "/complete", "");
    std::error_code ec;
    fs::rename(tmpl, final_dir, ec);  // fails when another process published first: use theirs
    if (ec) fs::remove_all(tmpl, ec);
    return final_dir.string();
  }
  static std::string ref(const std::string& name) { return *dir_ + "/" + name; }
  static std::string* dir_;
};
std::string* ResNet50::dir_ = nullptr;

TEST_F(ResNet50, MatchesTorchvisionAtThreeSizesInBothFormats) {
  WeightsIdentity id;
  auto zip = net_for(ref("resnet50_zip.pth"), &id);
  EXPECT_EQ(zip->dim(), 2048u);
  EXPECT_EQ(id.name, "resnet50_zip.pth");
  EXPECT_EQ(id.sha256, sha256_file(ref("resnet50_zip.pth")));
  EXPECT_FALSE(id.random);
  // The legacy file lacks num_batches_tracked, as torchvision's resnet50-0676ba61.pth does.
  bool counters = false;
  read_state_dict(ref("resnet50_legacy.pth"), [&](const std::string& name) {
    counters = counters || name.find("num_batches_tracked") != std::string::npos;
    return false;
  });
  EXPECT_FALSE(counters);
  auto legacy = net_for(ref("resnet50_legacy.pth"));
  const double bound = features_bound();
  double worst = 0;
  for (int size : {64, 100, 224}) {
    const std::vector<float> in = read_f32(ref(fmt::format("input_{}.f32", size)));
    const std::vector<float> want = read_f32(ref(fmt::format("features_{}.f32", size)));
    const std::vector<float> got = run(*zip, in, size);
    ASSERT_EQ(got.size(), want.size()) << size << " px";
    for (size_t i = 0; i < got.size() / kDim; ++i) {
      const double d = max_rel_diff(got.data() + i * kDim, want.data() + i * kDim, kDim);
      EXPECT_LE(d, bound) << size << " px, view " << i;
      worst = std::max(worst, d);
    }
    // The same tensors from either format: the same features, bit for bit (at one size: the
    // loader, not the forward, is what differs).
    if (size == 64) EXPECT_EQ(run(*legacy, in, size), got);
  }
  testing::report_numerics("resnet50 features vs torchvision (64, 100, 224 px)", worst, bound);
  std::printf("resnet50 vs torchvision: worst relative difference %.3g (bound %.3g)\n", worst,
              bound);
}

TEST_F(ResNet50, RandomSeedHoldsTorchvisionsInitBitForBit) {
  // Parameter for parameter against torch's own manual_seed(5); resnet50().
  const StateDict ours = resnet50_random_state_dict(5);
  const StateDict torchs = read_state_dict(ref("random5.pth"), [](const std::string& name) {
    return name.find("num_batches_tracked") == std::string::npos;
  });
  ASSERT_EQ(ours.size(), torchs.size());
  size_t values = 0;
  for (const auto& [name, t] : torchs) {
    auto it = ours.find(name);
    ASSERT_NE(it, ours.end()) << name;
    ASSERT_EQ(it->second.shape, t.shape) << name;
    int worst_ulp = 0;
    for (size_t i = 0; i < t.values.size(); ++i)
      worst_ulp = std::max(worst_ulp, testing::ulp_distance(it->second.values[i], t.values[i]));
    EXPECT_LE(worst_ulp, 1) << name;
    EXPECT_EQ(it->second.values, t.values) << name << " (not bit for bit)";
    values += t.values.size();
  }
  // resnet50's 25557032 parameters and its batch norms' 2 × 26560 running statistics.
  EXPECT_EQ(values, 25557032u + 53120u);
  // random:5 as extract runs it: marked random, and the features torchvision computes.
  WeightsIdentity id;
  auto net = net_for("random:5", &id);
  EXPECT_TRUE(id.random);
  EXPECT_EQ(id.name, "random:5");
  EXPECT_EQ(id.sha256, "");
  const std::vector<float> in = read_f32(ref("input_64.f32"));
  const std::vector<float> got = run(*net, in, 64);
  const std::vector<float> want = read_f32(ref("random5_64.f32"));
  ASSERT_EQ(got.size(), want.size());
  const double bound = features_bound();
  for (size_t i = 0; i < got.size() / kDim; ++i)
    EXPECT_LE(max_rel_diff(got.data() + i * kDim, want.data() + i * kDim, kDim), bound) << i;
  // Through the file loader the same weights give the same features, bit for bit.
  EXPECT_EQ(run(*net_for(ref("random5.pth")), in, 64), got);
}

TEST_F(ResNet50, BadWeightFilesGiveClearErrors) {
  TempDir tmp;
  std::string msg;
  // Truncated: the zip format loses its central directory, the legacy one half its storages.
  for (auto [name, keep] :
       {std::pair{"resnet50_zip.pth", size_t{100}}, {"resnet50_legacy.pth", 0}}) {
    const std::string bytes = testing::read_file(ref(name));
    testing::write_file(tmp / "cut.pth",
                        bytes.substr(0, keep ? bytes.size() - keep : bytes.size() / 2));
    EXPECT_EQ(kind_of([&] { net_for(tmp / "cut.pth"); }, &msg), ErrorKind::kBadWeights) << name;
    EXPECT_NE(msg.find("cut.pth"), std::string::npos) << msg;
  }
  // Missing tensors, a wrong shape, a block resnet50 does not have (resnet101's layer3 has 23),
  // in small files: the stem's tensors and one change (the names are checked before values).
  const StateDict stem = [] {
    StateDict sd;
    sd["conv1.weight"] = TensorData{{64, 3, 7, 7}, std::vector<float>(64 * 3 * 49, 0.01f)};
    for (const char* t : {"weight", "bias", "running_mean", "running_var"})
      sd[std::string("bn1.") + t] = TensorData{{64}, std::vector<float>(64, 1.0f)};
    return sd;
  }();
  auto write_with = [&](const std::string& file, const std::function<void(StateDict&)>& edit) {
    StateDict s = stem;
    edit(s);
    write_state_dict(tmp / file, OrderedStateDict(s.begin(), s.end()));
    return tmp / file;
  };
  std::string f = write_with("stem.pth", [](StateDict&) {});
  EXPECT_EQ(kind_of([&] { net_for(f); }, &msg), ErrorKind::kBadWeights);
  EXPECT_NE(msg.find("stem.pth: not a torchvision resnet50 state_dict: missing "
                     "'layer1.0.conv1.weight'"),
            std::string::npos)
      << msg;
  f = write_with("missing.pth", [](StateDict& s) { s.erase("bn1.running_var"); });
  EXPECT_EQ(kind_of([&] { net_for(f); }, &msg), ErrorKind::kBadWeights);
  EXPECT_NE(msg.find("missing.pth"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing 'bn1.running_var'"), std::string::npos) << msg;
  f = write_with("shape.pth", [](StateDict& s) { s["conv1.weight"].shape = {64, 3, 49, 1}; });
  EXPECT_EQ(kind_of([&] { net_for(f); }, &msg), ErrorKind::kBadWeights);
  EXPECT_NE(
      msg.find("shape.pth: 'conv1.weight' has shape [64, 3, 49, 1], resnet50 needs [64, 3, 7, 7]"),
      std::string::npos)
      << msg;
  f = write_with("extra.pth", [](StateDict& s) {
    s["layer3.6.conv1.weight"] = TensorData{{256, 1024, 1, 1}, std::vector<float>(256 * 1024)};
  });
  EXPECT_EQ(kind_of([&] { net_for(f); }, &msg), ErrorKind::kBadWeights);
  EXPECT_NE(msg.find("extra.pth: unexpected 'layer3.6.conv1.weight'"), std::string::npos) << msg;
  // A VGG16 file given as resnet50.
  testing::write_random_vgg16(tmp / "vgg16.pth", 1);
  EXPECT_EQ(kind_of([&] { net_for(tmp / "vgg16.pth"); }, &msg), ErrorKind::kBadWeights);
  EXPECT_NE(msg.find("vgg16.pth: not a torchvision resnet50 state_dict"), std::string::npos) << msg;
  EXPECT_NE(msg.find("a VGG16 file? it needs --backbone vgg16"), std::string::npos) << msg;
  // Not a torch file, no file, bad seeds.
  testing::write_file(tmp / "text.pth", "not a torch file\n");
  EXPECT_EQ(kind_of([&] { net_for(tmp / "text.pth"); }, &msg), ErrorKind::kBadWeights);
  EXPECT_NE(msg.find("text.pth"), std::string::npos) << msg;
  EXPECT_EQ(kind_of([&] { net_for(tmp / "absent.pth"); }, &msg), ErrorKind::kInvalidArgument);
  EXPECT_NE(msg.find("absent.pth"), std::string::npos) << msg;
  for (const char* bad : {"random:", "random:x", "random:-3", "random:12abc"}) {
    EXPECT_EQ(kind_of([&] { net_for(bad); }, &msg), ErrorKind::kInvalidArgument) << bad;
    EXPECT_NE(msg.find(bad), std::string::npos) << msg;
  }
}

TEST_F(ResNet50, NoVggPrepoolOrPool4Map) {
  auto net = net_for("random:1");
  std::vector<float> in(3 * 64 * 64, 0.5f), out(2048 * 49);
  std::string msg;
  const std::vector<std::function<void()>> calls = {
      [&] { net->prepool_shape(64); }, [&] { net->forward_prepool(in.data(), 1, 64, out.data()); },
      [&] { net->pool4_shape(64); }, [&] { net->forward_pool4(in.data(), 1, 64, out.data()); }};
  for (const auto& call : calls) {
    EXPECT_EQ(kind_of(call, &msg), ErrorKind::kInvalidArgument);
    EXPECT_NE(msg.find("--codec prepool-f32 / --cut pool4 are VGG16's; resnet50 stores raw-f32"),
              std::string::npos)
        << msg;
  }
  // The normalisation it declares is the views' default (ImageNet's), as for VGG16.
  const Preprocess p;
  EXPECT_EQ(p.mean, std::vector<double>(kResnet50Mean.begin(), kResnet50Mean.end()));
  EXPECT_EQ(p.std, std::vector<double>(kResnet50Std.begin(), kResnet50Std.end()));
}

// --precision bf16 on the CPU (where LibTorch's oneDNN runs bfloat16 convolutions): the folded
// weights are rounded to bfloat16 once, each convolution's input and output and each residual
// sum are rounded too (u = 2⁻⁹ relative each, accumulation in float32): 3 roundings for each of
// the 53 convolutions and 1 for each of the 16 additions, 175 in all. Independent roundings add
// in quadrature: √175 · 2⁻⁹ ≈ 2.6 % of the largest feature; the bound takes twice that.
TEST_F(ResNet50, Bf16StaysWithinItsRoundingBound) {
  if (!cpu_runs_bf16_conv()) GTEST_SKIP() << "no bfloat16 convolutions on this CPU";
  const std::vector<float> in = read_f32(ref("input_64.f32"));
  const std::vector<float> want = run(*net_for(ref("resnet50_zip.pth")), in, 64);
  NetOptions o{ref("resnet50_zip.pth"), "cpu", 2};
  o.precision = "bf16";
  const std::vector<float> got = run(*make_resnet50_net(o, nullptr), in, 64);
  const double bound = 2 * std::sqrt(175.0) * 0x1p-9;
  double worst = 0;
  for (size_t i = 0; i < got.size() / kDim; ++i) {
    const double d = max_rel_diff(got.data() + i * kDim, want.data() + i * kDim, kDim);
    EXPECT_LE(d, bound) << "view " << i;
    EXPECT_GT(d, 1e-4) << "view " << i << " did not run in bfloat16";
    worst = std::max(worst, d);
  }
  testing::report_numerics("resnet50 bf16 vs fp32 features (64 px)", worst, bound);
}

TEST_F(ResNet50, CudaMatchesCpuOrReportsUnavailable) {
  std::unique_ptr<FeatureNet> gpu;
  std::string msg;
  try {
    gpu = make_resnet50_net(NetOptions{"random:1", "cuda", 2}, nullptr);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("CUDA not available"), std::string::npos) << e.what();
    GTEST_SKIP() << "no CUDA device in this LibTorch build";
  }
  std::vector<float> in(2 * 3 * 96 * 96);
  for (size_t i = 0; i < in.size(); ++i) in[i] = std::sin(0.37f * static_cast<float>(i));
  const std::vector<float> a = run(*net_for("random:1"), in, 96), b = run(*gpu, in, 96);
  for (size_t i = 0; i < 2; ++i)
    EXPECT_LE(max_rel_diff(b.data() + i * kDim, a.data() + i * kDim, kDim), 1e-4) << i;
}

// `make -f Makefile.data weights BACKBONE=resnet50`: torchvision's file names, URLs and SHA-256
// prefixes, and the check of an existing file, without network (an existing file is only
// checked, never downloaded again).
TEST_F(ResNet50, MakeWeightsChecksTorchvisionsResnet50Files) {
  TempDir tmp;
  auto make = [&](const std::string& args, std::string* out) {
    return testing::run_command(
        "make -s -C " + testing::shell_quote(testing::source_dir()) + " -f Makefile.data " + args,
        out);
  };
  std::string out;
  ASSERT_EQ(make("weights-config BACKBONE=resnet50", &out), 0) << out;
  EXPECT_NE(out.find("https://download.pytorch.org/models/resnet50-0676ba61.pth"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("data/resnet50-0676ba61.pth"), std::string::npos) << out;
  EXPECT_NE(out.find("sha256 prefix 0676ba61"), std::string::npos) << out;
  ASSERT_EQ(make("weights-config BACKBONE=resnet50 FILE=resnet50-11ad3fa6.pth", &out), 0) << out;
  EXPECT_NE(out.find("https://download.pytorch.org/models/resnet50-11ad3fa6.pth"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("sha256 prefix 11ad3fa6"), std::string::npos) << out;
  ASSERT_EQ(make("weights-config", &out), 0) << out;  // the default stays VGG16's
  EXPECT_NE(out.find("https://download.pytorch.org/models/vgg16-397923af.pth"), std::string::npos)
      << out;
  EXPECT_NE(make("weights-config BACKBONE=resnet18", &out), 0);
  EXPECT_NE(out.find("BACKBONE"), std::string::npos) << out;
  EXPECT_NE(make("weights-config BACKBONE=resnet50 FILE=vgg16-397923af.pth", &out), 0);
  EXPECT_NE(out.find("FILE"), std::string::npos) << out;

  // An existing file with another hash: deleted, with the expected prefix in the message.
  const std::string content = "not resnet50 weights\n";
  for (const char* file : {"resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"}) {
    const std::string w = tmp / file;
    testing::write_file(w, content);
    EXPECT_NE(make(fmt::format("weights BACKBONE=resnet50 FILE={} WEIGHTS={}", file,
                               testing::shell_quote(w)),
                   &out),
              0)
        << out;
    EXPECT_FALSE(fs::exists(w)) << file;
    EXPECT_NE(out.find(std::string("expected ") + fs::path(file).stem().string().substr(9)),
              std::string::npos)
        << out;
  }
  // A file with the expected prefix is kept.
  const std::string w = tmp / "r.pth";
  testing::write_file(w, content);
  const std::string prefix = sha256_hex(content.data(), content.size()).substr(0, 8);
  EXPECT_EQ(make(fmt::format("weights BACKBONE=resnet50 WEIGHTS={} WEIGHTS_SHA_PREFIX={}",
                             testing::shell_quote(w), prefix),
                 &out),
            0)
      << out;
  EXPECT_EQ(testing::read_file(w), content);

  // A missing file is fetched from torchvision's URL for the backbone (a stub curl records its
  // arguments and "downloads" the wrong bytes): checked as WEIGHTS.part, deleted, never renamed.
  const std::string bin = tmp / "bin";
  fs::create_directories(bin);
  testing::write_file(bin + "/curl", "#!/bin/sh\necho \"$@\" >> " +
                                         testing::shell_quote(tmp / "CALLED") +
                                         "\nwhile [ $# -gt 0 ]; do\n"
                                         "  if [ \"$1\" = -o ]; then echo wrong > \"$2\"; fi\n"
                                         "  shift\ndone\n");
  fs::permissions(bin + "/curl", fs::perms::owner_all);
  const std::string fetched = tmp / "fetched.pth";
  EXPECT_NE(testing::run_command("PATH=" + testing::shell_quote(bin) + ":\"$PATH\" make -s -C " +
                                     testing::shell_quote(testing::source_dir()) +
                                     " -f Makefile.data weights BACKBONE=resnet50 WEIGHTS=" +
                                     testing::shell_quote(fetched),
                                 &out),
            0)
      << out;
  EXPECT_NE(testing::read_file(tmp / "CALLED")
                .find("https://download.pytorch.org/models/resnet50-0676ba61.pth"),
            std::string::npos);
  EXPECT_NE(out.find("expected 0676ba61"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(fetched));
  EXPECT_FALSE(fs::exists(fetched + ".part"));
}

}  // namespace
}  // namespace vggcache
