// Unit tests of train_core's parts: init, Adam, losses, the data schedule, the head file,
// standardisation and the trainer on in-memory data.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <numeric>
#include <set>

#include "common/error.h"
#include "head/adam.h"
#include "head/evaluate.h"
#include "head/feature_check.h"
#include "head/head_file.h"
#include "head/head_model.h"
#include "head/loss.h"
#include "head/rng.h"
#include "train_fixtures.h"
#include "train_head/batch_schedule.h"
#include "train_head/trainer.h"

namespace vggcache {
namespace {

TEST(HeadInit, UniformWithinLinearBounds) {
  HeadWeights w = init_head({1000, 64, 2}, 3);
  ASSERT_EQ(w.w1.size(), 64000u);
  ASSERT_EQ(w.w2.size(), 64u);
  const float b1 = 1.0f / std::sqrt(1000.0f), b2 = 1.0f / 8.0f;
  double sum = 0, sq = 0;
  for (float v : w.w1) {
    ASSERT_LE(std::abs(v), b1);
    sum += v;
    sq += double(v) * v;
  }
  // U(±b) has mean 0 and variance b²/3.
  EXPECT_NEAR(sum / w.w1.size(), 0.0, 0.02 * b1);
  EXPECT_NEAR(sq / w.w1.size(), b1 * b1 / 3, 0.02 * b1 * b1);
  for (float v : w.b1) EXPECT_LE(std::abs(v), b1);
  for (float v : w.w2) EXPECT_LE(std::abs(v), b2);
  EXPECT_EQ(init_head({1000, 64, 2}, 3).w1, w.w1);  // reproducible
  EXPECT_NE(init_head({1000, 64, 2}, 4).w1, w.w1);
  EXPECT_EQ(init_head({10, 4, 5}, 1).w2.size(), 20u);  // softmax: one output per class
}

// init_head fills W1 in parallel from Rng::peek: the same values, in the same order, as drawing
// the stream one value after another (W1, then b1, w2, b2), with any thread count.
TEST(HeadInit, ParallelFillIsTheSequentialStream) {
  const HeadShape shape{3000, 40, 2};  // 120,000 W1 values: several parallel chunks
  Rng rng(7, Stream::kInit);
  const float b1 = 1.0f / std::sqrt(3000.0f), b2 = 1.0f / std::sqrt(40.0f);
  auto draw = [&](size_t n, float bound) {
    std::vector<float> v(n);
    for (float& x : v) x = (2.0f * rng.uniform() - 1.0f) * bound;
    return v;
  };
  const std::vector<float> w1 = draw(120000, b1), bias1 = draw(40, b1), w2 = draw(40, b2),
                           bias2 = draw(1, b2);
  for (int threads : {1, 2, 3}) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    const HeadWeights w = init_head(shape, 7);
    EXPECT_EQ(w.w1, w1) << threads;
    EXPECT_EQ(w.b1, bias1) << threads;
    EXPECT_EQ(w.w2, w2) << threads;
    EXPECT_EQ(w.b2, bias2) << threads;
  }
  Rng a(3, Stream::kShuffle), b(3, Stream::kShuffle);
  for (int i = 0; i < 4; ++i) b.next();
  EXPECT_EQ(a.peek(4), b.next());  // the fifth draw
  a.discard(5);
  EXPECT_EQ(a.next(), b.next());
}

TEST(Adam, FirstStepMovesByLr) {
  // With bias correction the first step is lr · g/|g| (up to eps) whatever the gradient scale.
  std::vector<float> p = {1.0f, 1.0f, 1.0f}, m(3, 0.0f), v(3, 0.0f), g = {0.5f, -2e-3f, 0.0f};
  AdamConfig c;
  c.lr = 0.01;
  adam_update(p.data(), m.data(), v.data(), g.data(), 3, adam_step(c, 1));
  EXPECT_NEAR(p[0], 0.99f, 1e-6);
  EXPECT_NEAR(p[1], 1.01f, 1e-5);
  EXPECT_EQ(p[2], 1.0f);
}

TEST(Adam, WeightDecayIsL2OnTheGradient) {
  std::vector<float> p = {2.0f}, m(1, 0.0f), v(1, 0.0f), g = {0.0f};
  AdamConfig c;
  c.weight_decay = 0.1;
  adam_update(p.data(), m.data(), v.data(), g.data(), 1, adam_step(c, 1));
  EXPECT_NEAR(m[0], 0.1f * 0.2f, 1e-7);  // (1 − β1) · wd · p
  EXPECT_LT(p[0], 2.0f);
}

// adam_update runs as the widest clone the CPU has (head/simd.h); it must give the floats of
// the plain formula, element by element, including the tail that does not fill a vector.
TEST(Adam, VectorisedUpdateEqualsTheScalarFormulaBitForBit) {
  AdamConfig c;
  c.weight_decay = 1e-4;
  const AdamStep s = adam_step(c, 7);
  Rng rng(11, Stream::kInit);
  constexpr size_t kN = 1000 + 13;
  std::vector<float> p(kN), m(kN), v(kN), g(kN);
  for (size_t i = 0; i < kN; ++i) {
    p[i] = rng.uniform() - 0.5f;
    m[i] = 1e-3f * (rng.uniform() - 0.5f);
    v[i] = 1e-6f * rng.uniform();
    g[i] = 1e-2f * (rng.uniform() - 0.5f);
  }
  std::vector<float> p2 = p, m2 = m, v2 = v;
  adam_update(p.data(), m.data(), v.data(), g.data(), kN, s);
  const float inv_bc2 = 1.0f / s.bc2_sqrt;
  for (size_t i = 0; i < kN; ++i) {
    // Each product stored before it is added: no contraction into FMAs, whatever the flags.
    volatile float wp = s.weight_decay * p2[i];
    const float gi = g[i] + wp;
    volatile float m1 = m2[i] * s.beta1, m2g = s.one_minus_beta1 * gi;
    const float mi = m1 + m2g;
    volatile float v1 = v2[i] * s.beta2, cg = s.one_minus_beta2 * gi;
    volatile float cgg = cg * gi;
    const float vi = v1 + cgg;
    volatile float root = std::sqrt(vi) * inv_bc2;
    volatile float step = s.step_size * (mi / (root + s.eps));
    const float want = p2[i] - step;
    ASSERT_EQ(m[i], mi) << i;
    ASSERT_EQ(v[i], vi) << i;
    ASSERT_EQ(p[i], want) << i;
  }
}

TEST(Loss, BceClampsLogAtMinus100) {
  float z[2] = {200.0f, -200.0f}, dz[2];
  int32_t y[2] = {0, 1};
  double loss = bce_with_sigmoid(z, y, 2, dz, nullptr);
  EXPECT_NEAR(loss, 100.0, 1e-9);  // both saturated wrong: each −max(log 0, −100) = 100
  EXPECT_TRUE(std::isfinite(dz[0]) && std::isfinite(dz[1]));
}

TEST(Loss, SoftmaxGradientSumsToZero) {
  float z[3] = {0.5f, -1.0f, 2.0f}, dz[3], prob[3];
  int32_t y[1] = {1};
  double loss = softmax_cross_entropy(z, y, 1, 3, dz, prob);
  EXPECT_NEAR(loss, -std::log(prob[1]), 1e-6);
  EXPECT_NEAR(dz[0] + dz[1] + dz[2], 0.0, 1e-6);
}

TEST(Schedule, OneCropPerImagePerEpochShuffled) {
  std::vector<uint32_t> images(50);
  std::iota(images.begin(), images.end(), 0);
  auto e0 = epoch_items(images, 10, false, 1, 0), e1 = epoch_items(images, 10, false, 1, 1);
  ASSERT_EQ(e0.size(), 50u);
  std::set<uint32_t> seen;
  bool crops_differ = false, order_differs = false;
  for (size_t i = 0; i < e0.size(); ++i) {
    seen.insert(e0[i].image);
    EXPECT_LT(e0[i].crop, 10u);
    order_differs |= e0[i].image != i;
  }
  EXPECT_EQ(seen.size(), 50u);
  EXPECT_TRUE(order_differs);
  auto crop_of = [](const std::vector<Item>& e, uint32_t img) {
    for (auto& it : e)
      if (it.image == img) return it.crop;
    return 999u;
  };
  for (uint32_t i = 0; i < 50; ++i) crops_differ |= crop_of(e0, i) != crop_of(e1, i);
  EXPECT_TRUE(crops_differ);  // a fresh view per epoch
  auto again = epoch_items(images, 10, false, 1, 0);
  for (size_t i = 0; i < e0.size(); ++i) EXPECT_EQ(again[i].image, e0[i].image);
  EXPECT_EQ(epoch_items(images, 10, true, 1, 0).size(), 500u);
}

TEST(Schedule, ValSplitByImageDisjoint) {
  std::vector<uint32_t> images(100);
  std::iota(images.begin(), images.end(), 0);
  ImageSplit s = split_images(images, 0.2, 9);
  EXPECT_EQ(s.val.size(), 20u);
  EXPECT_EQ(s.train.size(), 80u);
  std::set<uint32_t> all(s.train.begin(), s.train.end());
  for (uint32_t v : s.val) EXPECT_TRUE(all.insert(v).second);
  EXPECT_EQ(all.size(), 100u);
  EXPECT_TRUE(split_images(images, 0.0, 9).val.empty());
}

TEST(HeadFile, RoundTripAndDamageDetected) {
  testing::TempDir tmp;
  HeadFile h;
  h.weights = init_head({32, 8, 3}, 1);
  h.classes = {"a", "b", "c"};
  h.standardizer.mean.assign(32, 0.5f);
  h.standardizer.std.assign(32, 2.0f);
  h.dropout = 0.5;
  h.features = {{"dim", 32}};
  save_head(tmp / "head.bin", h);
  HeadFile r = load_head(tmp / "head.bin");
  EXPECT_EQ(r.weights.w1, h.weights.w1);
  EXPECT_EQ(r.weights.b2, h.weights.b2);
  EXPECT_EQ(r.weights.shape.classes, 3);
  EXPECT_EQ(r.classes, h.classes);
  EXPECT_EQ(r.standardizer.std, h.standardizer.std);
  EXPECT_EQ(r.features, h.features);

  std::string bytes = testing::read_file(tmp / "head.bin");
  bytes[bytes.size() / 2] ^= 0x40;
  testing::write_file(tmp / "bad.bin", bytes);
  try {
    load_head(tmp / "bad.bin");
    FAIL() << "damaged head accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
  }
}

TEST(FeatureCheck, NamesTheDifferingSetting) {
  CacheMeta a;
  a.classes = {"x", "y"};
  a.weights = {"random:1", "", true};
  CacheMeta b = a;
  b.preprocess.eval = true;  // augmentation settings do not matter
  b.preprocess.crops = 1;
  EXPECT_EQ(feature_difference(feature_settings(a), feature_settings(b)), "");
  b.preprocess.size = 100;
  EXPECT_NE(feature_difference(feature_settings(a), feature_settings(b)).find("size"),
            std::string::npos);
  b = a;
  b.weights = {"random:2", "", true};
  EXPECT_NE(feature_difference(feature_settings(a), feature_settings(b)).find("weights"),
            std::string::npos);
}

// Gaussian clusters in memory: the trainer learns them, and the result is the same with 1 or
// 2 threads.
MemorySource cluster_source(int classes, int per_class, int crops, int dim, uint64_t seed) {
  Rng rng(seed, Stream::kInit);
  std::vector<float> centres(size_t(classes) * dim);
  for (auto& c : centres) c = 1.5f * testing::gaussian(rng);
  std::vector<float> data;
  std::vector<int32_t> labels;
  for (int c = 0; c < classes; ++c)
    for (int i = 0; i < per_class; ++i) {
      labels.push_back(c);
      for (int k = 0; k < crops; ++k)
        for (int j = 0; j < dim; ++j)
          data.push_back(std::max(0.0f, centres[size_t(c) * dim + j] + testing::gaussian(rng)));
    }
  return MemorySource(std::move(data), std::move(labels), dim, crops);
}

TrainOutcome train_clusters(int threads, int classes, bool standardize) {
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  MemorySource train = cluster_source(classes, 60, 3, 48, 1);
  MemorySource test = cluster_source(classes, 20, 2, 48, 1 + 1000);
  TrainParams p;
  p.epochs = 4;
  p.batch = 16;
  p.hidden = 32;
  p.seed = 5;
  p.lr = 3e-3;
  Standardizer s;
  if (standardize) s = compute_standardizer(train, train.images());
  TrainSetup setup{&train, &test, train.images(), {}, &s, init_head({48, 32, classes}, 5)};
  return run_training(p, setup, nullptr);
}

TEST(Trainer, LearnsClustersAndIsThreadIndependent) {
  TrainOutcome one = train_clusters(1, 3, true), two = train_clusters(2, 3, true);
  ASSERT_EQ(one.epochs.size(), 4u);
  EXPECT_GT(one.epochs.back().train_accuracy, 0.9);
  EXPECT_EQ(one.final_weights.w1, two.final_weights.w1);  // bit-identical
  EXPECT_EQ(one.epochs.back().test_loss, two.epochs.back().test_loss);
}

// A sweep evaluates its heads together (one gather per pass, heads concurrently): each head's
// result must be what evaluating it alone gives, bit for bit, whatever the heads' shapes.
TEST(Evaluate, HeadsTogetherEqualEachAlone) {
  MemorySource src = cluster_source(3, 40, 3, 24, 11);  // 120 images, 3 crops: several passes
  std::vector<HeadWeights> heads = {init_head({24, 8, 3}, 1), init_head({24, 32, 3}, 2),
                                    init_head({24, 16, 3}, 3)};
  std::vector<const HeadWeights*> ptrs;
  for (const HeadWeights& h : heads) ptrs.push_back(&h);
  Standardizer s = compute_standardizer(src, src.images());
  const std::vector<uint32_t> images(src.images().begin() + 5, src.images().end());
  const std::vector<EvalResult> together = evaluate_heads(ptrs, src, images, &s, 64);
  ASSERT_EQ(together.size(), heads.size());
  for (size_t h = 0; h < heads.size(); ++h) {
    const EvalResult alone = evaluate_head(heads[h], src, images, &s, 64);
    EXPECT_EQ(together[h].images, alone.images);
    EXPECT_EQ(together[h].probs, alone.probs) << h;
    EXPECT_EQ(together[h].loss, alone.loss) << h;
    EXPECT_EQ(together[h].accuracy, alone.accuracy) << h;
    EXPECT_EQ(together[h].confusion, alone.confusion) << h;
  }
  // The heads differ, so a mix-up between them would show.
  EXPECT_NE(together[0].probs, together[1].probs);
  EXPECT_TRUE(evaluate_heads(ptrs, src, {}, &s).front().probs.empty());
}

TEST(Standardizer, ZeroMeanUnitStd) {
  MemorySource src = cluster_source(2, 30, 2, 16, 3);
  Standardizer s = compute_standardizer(src, src.images());
  std::vector<Item> items = all_items(src.images(), 2);
  std::vector<float> x(items.size() * 16);
  src.gather(items.data(), static_cast<int>(items.size()), &s, x.data());
  for (int j = 0; j < 16; ++j) {
    double m = 0, q = 0;
    for (size_t i = 0; i < items.size(); ++i) m += x[i * 16 + j];
    m /= items.size();
    for (size_t i = 0; i < items.size(); ++i) q += (x[i * 16 + j] - m) * (x[i * 16 + j] - m);
    EXPECT_NEAR(m, 0.0, 1e-4);
    EXPECT_NEAR(q / items.size(), 1.0, 1e-3);
  }
}

}  // namespace
}  // namespace vggcache
