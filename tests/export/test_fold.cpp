// export/fold.h against the computation it replaces, in float64: a random head (with and without
// standardisation) applied to PyTorch-style adaptive 7×7 average pooling of a random pool5 map
// equals the folded first layer applied to the map itself, for maps smaller than, equal to and
// larger than 7×7, square or not, divisible or not.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/error.h"
#include "export/fold.h"
#include "head/head_model.h"

namespace vggcache {
namespace {

constexpr int kChannels = 512, kPooled = 7;

// PyTorch's AdaptiveAvgPool2d((7, 7)) of a C × h × w map, written out cell by cell.
std::vector<double> adaptive_pool(const std::vector<double>& x, int h, int w) {
  std::vector<double> y(size_t(kChannels) * kPooled * kPooled);
  for (int c = 0; c < kChannels; ++c)
    for (int oi = 0; oi < kPooled; ++oi)
      for (int oj = 0; oj < kPooled; ++oj) {
        const int i0 = int(std::floor(double(oi) * h / kPooled));
        const int i1 = int(std::ceil(double(oi + 1) * h / kPooled));
        const int j0 = int(std::floor(double(oj) * w / kPooled));
        const int j1 = int(std::ceil(double(oj + 1) * w / kPooled));
        double s = 0;
        for (int i = i0; i < i1; ++i)
          for (int j = j0; j < j1; ++j) s += x[(size_t(c) * h + i) * w + j];
        y[(size_t(c) * kPooled + oi) * kPooled + oj] = s / ((i1 - i0) * (j1 - j0));
      }
  return y;
}

void check(int h, int w, bool standardize) {
  HeadFile head;
  head.weights = init_head(HeadShape{kChannels * kPooled * kPooled, 3, 2}, 7);
  std::mt19937 rng(h * 100 + w);
  std::uniform_real_distribution<float> u(0.5f, 2.0f), m(-1.0f, 1.0f);
  const size_t dim = head.weights.shape.dim;
  if (standardize)
    for (size_t j = 0; j < dim; ++j) {
      head.standardizer.mean.push_back(m(rng));
      head.standardizer.std.push_back(u(rng));
    }
  std::vector<double> x(size_t(kChannels) * h * w);
  for (double& v : x) v = u(rng);
  const std::vector<double> pooled = adaptive_pool(x, h, w);

  const FoldedFirstLayer f = fold_first_layer(head, h, w);
  ASSERT_EQ(f.w.size(), 3 * x.size());
  for (int k = 0; k < 3; ++k) {
    double want = head.weights.b1[k], got = f.b[k], scale = std::abs(want);
    for (size_t j = 0; j < dim; ++j) {
      double wj = head.weights.w1[k * dim + j], xj = pooled[j], shift = 0;
      if (standardize) {
        wj /= head.standardizer.std[j];
        shift = head.standardizer.mean[j];
      }
      want += wj * (xj - shift);
      scale += std::abs(wj) * (std::abs(xj) + std::abs(shift));
    }
    for (size_t j = 0; j < x.size(); ++j) got += double(f.w[k * x.size() + j]) * x[j];
    // Each folded weight and the folded bias are rounded to float32 once (relative 2^-24): the
    // sum of their errors is at most 2^-24 · (|b| + Σ|W'|·(|x| + |mean|)); float64 adds nothing
    // visible at that scale.
    EXPECT_NEAR(got, want, 4 * std::ldexp(scale, -24)) << h << "×" << w << " unit " << k;
  }
}

TEST(Fold, AdaptivePoolingAndStandardisationFoldIntoTheFirstLayer) {
  for (auto [h, w] : {std::pair{1, 1}, {2, 2}, {3, 3}, {2, 5}, {7, 7}, {9, 9}, {14, 14}})
    for (bool standardize : {false, true}) check(h, w, standardize);
}

TEST(Fold, SevenBySevenIsTheHeadItself) {
  HeadFile head;
  head.weights = init_head(HeadShape{kChannels * kPooled * kPooled, 4, 2}, 3);
  const FoldedFirstLayer f = fold_first_layer(head);
  EXPECT_EQ(f.w, head.weights.w1);
  EXPECT_EQ(f.b, head.weights.b1);
}

TEST(Fold, RefusesAHeadOfAnotherWidthAndAnEmptyMap) {
  HeadFile head;
  head.weights = init_head(HeadShape{100, 4, 2}, 3);
  EXPECT_THROW(fold_first_layer(head), Error);
  head.weights = init_head(HeadShape{kChannels * kPooled * kPooled, 4, 2}, 3);
  EXPECT_THROW(fold_first_layer(head, 0, 2), Error);
}

TEST(Fold, Pool5Side) {
  EXPECT_EQ(vgg16_pool5_side(224), 7);
  EXPECT_EQ(vgg16_pool5_side(64), 2);
  EXPECT_EQ(vgg16_pool5_side(100), 3);
  EXPECT_EQ(vgg16_pool5_side(31), 0);
}

}  // namespace
}  // namespace vggcache
