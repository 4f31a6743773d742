// extract --precision on the CPU: VGG16's features in bfloat16 and float32 against a float64
// evaluation of the same network on carbike64 views, each within a bound derived from its
// rounding; the precision names and the refusal of float16 on the CPU.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "common/image_folder.h"
#include "extract/feature_net.h"
#include "extract/pipeline.h"
#include "extract/vgg16.h"
#include "extract_fixture.h"
#include "test_util.h"

namespace vggcache {
namespace {

// max |a - b| over one view's features relative to max |ref| (per-element relative error means
// nothing for the many features near zero after ReLU).
double view_rel_diff(const torch::Tensor& a, const torch::Tensor& ref) {
  const double scale = ref.abs().max().item<double>();
  return (a.to(torch::kFloat64) - ref.to(torch::kFloat64)).abs().max().item<double>() / scale;
}

// bfloat16 keeps 8 significant bits: rounding to it moves a value by at most u = 2^-9 relative.
// Each convolution then computes with inputs and weights both rounded, so every product x·w is
// off by at most 2u relative, and the sum of 9·C_in products, accumulated in float32 (2^-24,
// negligible next to u), by at most 2u of the sum of their magnitudes, which ReLU networks'
// features are of the order of. ReLU and max-pooling do not amplify a difference and the output
// is rounded again as the next layer's input, so the thirteen layers' errors add: 26u ≈ 0.051 of
// the largest feature. (The average pool and flatten run in float32 after the cast back.)
constexpr double kBf16Bound = 13 * 2 * 0x1p-9;

TEST(Precision, Bf16AndFp32AgainstFloat64OnCarbikeViews) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  testing::TempDir tmp;
  testing::make_split(carbike, tmp / "split", 2, /*with_bad=*/false);
  ExtractParams p;
  p.data_dir = tmp / "split";
  p.size = 64;
  p.crops = 2;
  p.threads = 2;
  const FolderScan scan = scan_image_folder(p.data_dir);
  auto alloc = make_vgg16_net(NetOptions{"random:1", "cpu", 2, "fp32"}, nullptr);
  const PreparedChunk c =
      prepare_chunk(p, scan, 0, static_cast<uint32_t>(scan.files.size()), *alloc);
  const int64_t n = static_cast<int64_t>(c.views.size());
  ASSERT_EQ(n, 8);
  const torch::Tensor x = torch::from_blob(c.input.data, {n, 3, p.size, p.size}, torch::kFloat32);

  auto features = [&](torch::ScalarType dtype) {
    return load_vgg16("random:1", torch::kCPU, nullptr, dtype).forward(x);
  };
  const torch::Tensor f64 = features(torch::kFloat64), f32 = features(torch::kFloat32);
  if (!cpu_runs_bf16_conv()) {
    // No bfloat16 convolution on this CPU: float32 still holds its bound, and bf16 is refused
    // (NamesAndTheCpuFloat16Refusal checks the message).
    double worst32 = 0;
    for (int64_t v = 0; v < n; ++v) worst32 = std::max(worst32, view_rel_diff(f32[v], f64[v]));
    EXPECT_LE(worst32, testing::vgg16_features_bound());
    EXPECT_THROW(make_vgg16_net(NetOptions{"random:1", "cpu", 1, "bf16"}, nullptr), Error);
    fmt::print(
        "[numerics] precision: fp32 {:.3g} (bound {:.3g}); bf16 not run: this CPU has no "
        "bfloat16 convolution in LibTorch (refused)\n",
        worst32, testing::vgg16_features_bound());
    return;
  }
  const torch::Tensor b16 = features(torch::kBFloat16);
  ASSERT_EQ(b16.scalar_type(), torch::kFloat32);  // the cache's values are float32 either way
  ASSERT_EQ(b16.sizes(), f32.sizes());
  double worst32 = 0, worst16 = 0, least16 = 1, worst16_32 = 0;
  for (int64_t v = 0; v < n; ++v) {
    const double e32 = view_rel_diff(f32[v], f64[v]), e16 = view_rel_diff(b16[v], f64[v]);
    EXPECT_LE(e32, testing::vgg16_features_bound()) << "view " << v;
    EXPECT_LE(e16, kBf16Bound) << "view " << v;
    worst32 = std::max(worst32, e32);
    worst16 = std::max(worst16, e16);
    least16 = std::min(least16, e16);
    worst16_32 = std::max(worst16_32, view_rel_diff(b16[v], f32[v]));
  }
  // bfloat16 must really have run: float32 alone cannot move a feature this far.
  EXPECT_GT(least16, 10 * testing::vgg16_features_bound());
  fmt::print(
      "[numerics] precision, {} carbike64 views at {} px, max |diff| / max |float64 feature|: "
      "fp32 {:.3g} (bound {:.3g}), bf16 {:.3g} (bound {:.3g}); bf16 vs fp32 {:.3g}\n",
      n, p.size, worst32, testing::vgg16_features_bound(), worst16, kBf16Bound, worst16_32);
}

TEST(Precision, NamesAndTheCpuFloat16Refusal) {
  EXPECT_EQ(precision_dtype("fp32", torch::kCPU), torch::kFloat32);
  if (cpu_runs_bf16_conv()) {
    EXPECT_EQ(precision_dtype("bf16", torch::kCPU), torch::kBFloat16);
  } else {
    try {
      precision_dtype("bf16", torch::kCPU);
      FAIL() << "--precision bf16 accepted on a CPU without bfloat16 convolutions";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("AVX-512"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(precision_dtype("fp16", torch::Device(torch::kCUDA)), torch::kHalf);
  for (const char* bad : {"fp16", "float16", "FP32", ""}) {
    try {
      precision_dtype(bad, torch::kCPU);
      FAIL() << "--precision '" << bad << "' accepted on the CPU";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find("--precision"), std::string::npos) << e.what();
    }
  }
  // The network object would refuse it too, before any forward pass.
  EXPECT_THROW(make_vgg16_net(NetOptions{"random:1", "cpu", 1, "fp16"}, nullptr), Error);
}

}  // namespace
}  // namespace vggcache
