// Parity of the C++ transforms with torchvision 0.14 / PIL 9.4 (reference data produced by
// tests/py/ref_transforms.py at test time), plus properties of the seeded crop draws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "extract/transforms.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::python;
using testing::run_command;
using testing::shell_quote;
using testing::source_dir;

// Runs ref_transforms.py once per (command, args) and returns the output path.
std::string reference(const std::string& cmd, const std::string& arg = "") {
  static testing::TempDir dir;
  static std::map<std::string, std::string> made;
  auto it = made.find(cmd);
  if (it != made.end()) return it->second;
  std::string out = dir / (cmd + ".out");
  std::string line = python() + " " + shell_quote(source_dir() + "/tests/py/ref_transforms.py") +
                     " " + cmd + (arg.empty() ? "" : " " + shell_quote(arg)) + " " +
                     shell_quote(out);
  std::string log;
  int rc = run_command(line, &log);
  if (rc != 0) {
    ADD_FAILURE() << "reference script failed (" << rc << "): " << line << "\n" << log;
    return "";
  }
  made[cmd] = out;
  return out;
}

// Sequential reader over a binary reference file.
class Reader {
 public:
  explicit Reader(const std::string& path) : data_(testing::read_file(path)) {}
  bool done() const { return pos_ >= data_.size(); }
  template <typename T>
  T get() {
    T v;
    take(&v, sizeof v);
    return v;
  }
  void take(void* dst, size_t n) {
    if (pos_ + n > data_.size()) throw std::runtime_error("reference file too short");
    std::memcpy(dst, data_.data() + pos_, n);
    pos_ += n;
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

// Replays the draws torch made, and checks that we ask for them with the same bounds.
class ReplayDraws : public CropDraws {
 public:
  explicit ReplayDraws(const nlohmann::json& draws) : draws_(draws) {}
  float uniform(float lo, float hi) override {
    const auto& d = next("u");
    EXPECT_EQ(lo, d[1].get<double>()) << "lower bound of draw " << pos_;
    EXPECT_EQ(hi, d[2].get<double>()) << "upper bound of draw " << pos_;
    return static_cast<float>(d[3].get<double>());
  }
  int64_t randint(int64_t lo, int64_t hi) override {
    const auto& d = next("r");
    EXPECT_EQ(lo, d[1].get<int64_t>());
    EXPECT_EQ(hi, d[2].get<int64_t>());
    return d[3].get<int64_t>();
  }
  bool bernoulli(double) override {
    ADD_FAILURE() << "get_params never draws a flip";
    return false;
  }
  size_t used() const { return pos_; }

 private:
  const nlohmann::json& next(const char* kind) {
    if (pos_ >= draws_.size()) throw std::runtime_error("more draws than torch made");
    const auto& d = draws_[pos_++];
    EXPECT_EQ(d[0].get<std::string>(), kind) << "draw " << pos_ - 1 << " is of another kind";
    return d;
  }
  const nlohmann::json& draws_;
  size_t pos_ = 0;
};

TEST(CropSampler, MatchesTorchvisionGetParamsOnTorchDraws) {
  std::string path = reference("crops");
  ASSERT_FALSE(path.empty());
  auto j = nlohmann::json::parse(testing::read_file(path));
  int n = 0, fallbacks = 0;
  for (const auto& c : j["cases"]) {
    Preprocess p;
    p.scale_min = c["scale"][0];
    p.scale_max = c["scale"][1];
    p.ratio_min = c["ratio"][0];
    p.ratio_max = c["ratio"][1];
    ReplayDraws draws(c["draws"]);
    int w = c["width"], h = c["height"];
    CropBox box = sample_resized_crop(w, h, p, draws);
    std::vector<int> want = c["box"];
    std::vector<int> got{box.x, box.y, box.w, box.h};
    EXPECT_EQ(got, want) << "case " << n << ": " << w << "x" << h << " " << c["scale"].dump() << " "
                         << c["ratio"].dump();
    EXPECT_EQ(draws.used(), c["draws"].size()) << "case " << n;
    EXPECT_FALSE(box.flipped);
    fallbacks += c["draws"].size() == 20;
    ++n;
  }
  EXPECT_GE(n, 400);
  EXPECT_GE(fallbacks, 50) << "the cases must exercise the centre-crop fallback";
  std::printf("[ crops ] %d get_params cases identical (%d through the fallback)\n", n, fallbacks);
}

TEST(CropSampler, TorchExpIsBitExact) {
  std::string path = reference("exp");
  ASSERT_FALSE(path.empty());
  Reader r(path);
  int32_t n = r.get<int32_t>();
  std::vector<float> x(n), y(n);
  r.take(x.data(), n * sizeof(float));
  r.take(y.data(), n * sizeof(float));
  int bad = 0;
  for (int i = 0; i < n; ++i) {
    float e = torch_expf(x[i]);
    if (std::memcmp(&e, &y[i], sizeof e) != 0 && ++bad <= 5) {
      ADD_FAILURE() << "exp(" << x[i] << "): " << e << " vs torch " << y[i];
    }
  }
  EXPECT_EQ(bad, 0) << "of " << n;
}

TEST(CropSampler, RejectsEmptyImageAndBadRanges) {
  SeededCropDraws d(1, 0, 0);
  EXPECT_THROW(sample_resized_crop(0, 5, Preprocess{}, d), Error);
  Preprocess p;
  p.ratio_min = 2;
  p.ratio_max = 1;
  EXPECT_THROW(sample_resized_crop(5, 5, p, d), Error);
  p = Preprocess{};
  p.scale_min = 0.9;
  p.scale_max = 0.1;
  EXPECT_THROW(sample_resized_crop(5, 5, p, d), Error);
}

TEST(SeededDraws, DependOnlyOnSeedImageCrop) {
  Preprocess p;
  p.flip = true;
  std::vector<CropBox> forward;
  for (uint32_t i = 0; i < 50; ++i) {
    for (uint32_t k = 0; k < 10; ++k) forward.push_back(view_box(64, 48, p, i, k));
  }
  // Reverse order, interleaved with unrelated draws: same boxes.
  for (int idx = static_cast<int>(forward.size()) - 1; idx >= 0; --idx) {
    view_box(100, 100, p, 7, 7);
    CropBox b = view_box(64, 48, p, idx / 10, idx % 10);
    const CropBox& a = forward[idx];
    ASSERT_TRUE(a.x == b.x && a.y == b.y && a.w == b.w && a.h == b.h && a.flipped == b.flipped)
        << "record " << idx / 10 << "," << idx % 10;
  }
  // Different seed / image / crop: different streams.
  SeededCropDraws a(1, 2, 3), b(2, 2, 3), c(1, 3, 3), d(1, 2, 4), e(1, 2, 3);
  float va = a.uniform(0, 1);
  EXPECT_NE(va, b.uniform(0, 1));
  EXPECT_NE(va, c.uniform(0, 1));
  EXPECT_NE(va, d.uniform(0, 1));
  EXPECT_EQ(va, e.uniform(0, 1));
}

TEST(SeededDraws, DistributionSanity) {
  SeededCropDraws d(42, 1, 1);
  const int n = 200000;
  double sum = 0;
  float lo = 1, hi = 0;
  std::vector<int> hist(7, 0);
  int heads = 0;
  for (int i = 0; i < n; ++i) {
    float u = d.uniform(0.25f, 0.75f);
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
    int64_t r = d.randint(3, 10);
    ASSERT_GE(r, 3);
    ASSERT_LT(r, 10);
    ++hist[r - 3];
    heads += d.bernoulli(0.5);
  }
  EXPECT_GE(lo, 0.25f);
  EXPECT_LE(hi, 0.75f);
  EXPECT_NEAR(sum / n, 0.5, 0.002);
  for (int c : hist) EXPECT_NEAR(c, n / 7.0, 5 * std::sqrt(n / 7.0));
  EXPECT_NEAR(heads, n / 2.0, 5 * std::sqrt(n / 4.0));
  EXPECT_EQ(d.randint(5, 6), 5);

  // Boxes: in bounds, area fraction spread over the scale range, aspect within the ratio range.
  Preprocess p;
  p.flip = true;
  double area = 0, flips = 0;
  const int boxes = 20000;
  for (int i = 0; i < boxes; ++i) {
    CropBox b = view_box(64, 64, p, i, 3);
    ASSERT_TRUE(b.x >= 0 && b.y >= 0 && b.w > 0 && b.h > 0 && b.x + b.w <= 64 && b.y + b.h <= 64);
    area += double(b.w) * b.h / (64.0 * 64.0);
    flips += b.flipped;
  }
  EXPECT_NEAR(area / boxes, 0.72, 0.03);  // E[scale] = 0.75, shrunk by the w,h <= 64 rejections
  EXPECT_NEAR(flips / boxes, 0.5, 0.02);

  Preprocess ev;
  ev.eval = true;
  CropBox whole = view_box(63, 41, ev, 5, 0);
  EXPECT_TRUE(whole.x == 0 && whole.y == 0 && whole.w == 63 && whole.h == 41 && !whole.flipped);
}

TEST(Resize, MatchesPilResizedCrop) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  std::string path = reference("resize", carbike);
  ASSERT_FALSE(path.empty());
  Reader r(path);
  int cases = 0, differing = 0, max_diff = 0;
  std::vector<uint8_t> out, want;
  while (!r.done()) {
    int32_t hdr[9];
    r.take(hdr, sizeof hdr);
    RgbImage src;
    src.width = hdr[0];
    src.height = hdr[1];
    src.pixels.resize(size_t(src.width) * src.height * 3);
    r.take(src.pixels.data(), src.pixels.size());
    CropBox box;
    box.x = hdr[2];
    box.y = hdr[3];
    box.w = hdr[4];
    box.h = hdr[5];
    box.flipped = hdr[8] != 0;
    const int ow = hdr[6], oh = hdr[7];
    want.resize(size_t(ow) * oh * 3);
    r.take(want.data(), want.size());
    out.assign(want.size(), 0);
    crop_resize_bilinear(src, box, ow, oh, out.data());
    int d = 0;
    for (size_t i = 0; i < out.size(); ++i) d = std::max(d, std::abs(int(out[i]) - int(want[i])));
    if (d) {
      ++differing;
      ADD_FAILURE() << "case " << cases << ": " << src.width << "x" << src.height << " box "
                    << box.x << "," << box.y << " " << box.w << "x" << box.h << " -> " << ow << "x"
                    << oh << " max diff " << d;
    }
    max_diff = std::max(max_diff, d);
    ++cases;
  }
  EXPECT_GE(cases, 400);
  EXPECT_LE(max_diff, 1);
  std::printf("[ resize ] %d cases, %d differing, max pixel diff %d vs PIL\n", cases, differing,
              max_diff);
}

TEST(Resize, RejectsBoxOutsideImage) {
  RgbImage img;
  img.width = 4;
  img.height = 4;
  img.pixels.assign(48, 0);
  uint8_t out[3 * 4];
  CropBox box;
  box.x = 2;
  box.w = 3;
  box.h = 2;
  EXPECT_THROW(crop_resize_bilinear(img, box, 2, 2, out), Error);
}

TEST(Normalize, BitExactWithTorchvision) {
  VGGCACHE_REQUIRE_CARBIKE(carbike);
  std::string path = reference("normalize", carbike);
  ASSERT_FALSE(path.empty());
  Reader r(path);
  int images = 0;
  while (!r.done()) {
    int32_t w = r.get<int32_t>(), h = r.get<int32_t>();
    double ms[6];
    r.take(ms, sizeof ms);
    Preprocess p;
    p.mean = {ms[0], ms[1], ms[2]};
    p.std = {ms[3], ms[4], ms[5]};
    std::vector<uint8_t> rgb(size_t(w) * h * 3);
    r.take(rgb.data(), rgb.size());
    std::vector<float> want(rgb.size()), got(rgb.size());
    r.take(want.data(), want.size() * sizeof(float));
    to_normalized_chw(rgb.data(), w, h, p, got.data());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
        << "image " << images << " (" << w << "x" << h << ")";
    ++images;
  }
  EXPECT_GE(images, 10);
}

}  // namespace
}  // namespace vggcache
