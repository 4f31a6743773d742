// Class imbalance, the parts: balanced class weights against scikit-learn, the weighted losses
// and their gradients by hand, the balanced sampler's class frequencies and determinism, epoch
// selection by balanced accuracy, and the usage errors of the three flags (train_head/imbalance.h,
// batch_schedule.h, head/loss.h). The end-to-end effect and the PyTorch comparison are in
// test_imbalance_torch.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "head/head_step_parts.h"
#include "head/loss.h"
#include "train_fixtures.h"
#include "train_head/batch_schedule.h"
#include "train_head/imbalance.h"
#include "train_head/sweep/plan.h"
#include "train_head/sweep/spec.h"

namespace vggcache {
namespace {

using nlohmann::json;
using testing::shell_quote;

// Labels with the given count per class, interleaved so order cannot matter.
std::vector<int32_t> labels_with_counts(const std::vector<int>& counts) {
  std::vector<int32_t> y;
  std::vector<int> left = counts;
  for (bool any = true; any;) {
    any = false;
    for (size_t c = 0; c < left.size(); ++c)
      if (left[c] > 0) {
        y.push_back(static_cast<int32_t>(c));
        --left[c];
        any = true;
      }
  }
  return y;
}

TEST(ClassWeights, BalancedEqualsScikitLearn) {
  const std::vector<std::vector<int>> cases = {{90, 10}, {27, 3, 10}, {5, 5, 5, 1}};
  testing::TempDir tmp;
  json labels = json::array();
  for (const auto& counts : cases) labels.push_back(labels_with_counts(counts));
  testing::write_file(tmp / "labels.json", labels.dump());
  // One interpreter for all cases: importing scikit-learn takes seconds.
  const std::string script =
      "import json, sys, numpy as np\n"
      "from sklearn.utils.class_weight import compute_class_weight\n"
      "print(json.dumps([compute_class_weight('balanced', classes=np.unique(y), y=np.array(y))"
      ".tolist() for y in json.load(open(sys.argv[1]))]))\n";
  testing::write_file(tmp / "cw.py", script);
  std::string out;
  const int rc = testing::run_command(
      testing::python() + " " + shell_quote(tmp / "cw.py") + " " + shell_quote(tmp / "labels.json"),
      &out);
  if (rc != 0 && out.find("No module named") != std::string::npos) {
    if (testing::in_ci()) FAIL() << "scikit-learn missing in CI: " << out;
    GTEST_SKIP() << "scikit-learn not installed: " << out;
  }
  ASSERT_EQ(rc, 0) << out;
  const json theirs = json::parse(out.substr(out.rfind("[[")));
  ASSERT_EQ(theirs.size(), cases.size());
  for (size_t k = 0; k < cases.size(); ++k) {
    const std::vector<float> ours = balanced_class_weights(labels[k].get<std::vector<int32_t>>(),
                                                           static_cast<int>(cases[k].size()));
    ASSERT_EQ(theirs[k].size(), ours.size());
    for (size_t c = 0; c < ours.size(); ++c)
      EXPECT_NEAR(ours[c], theirs[k][c].get<double>(), 1e-6 * theirs[k][c].get<double>())
          << "class " << c << " of " << json(cases[k]).dump();
  }
}

TEST(ClassWeights, AbsentClassGetsZeroAndBadLabelsThrow) {
  const std::vector<float> w = balanced_class_weights({0, 0, 0, 2}, 3);
  EXPECT_FLOAT_EQ(w[0], 4.0f / (2 * 3));  // two classes present
  EXPECT_EQ(w[1], 0.0f);
  EXPECT_FLOAT_EQ(w[2], 4.0f / (2 * 1));
  EXPECT_THROW(balanced_class_weights({0, 3}, 3), Error);
}

double sigmoid(double z) {
  return 1.0 / (1.0 + std::exp(-z));
}

TEST(WeightedLoss, BceAndGradientByHand) {
  const float z[3] = {0.5f, -1.0f, 2.0f};
  const int32_t y[3] = {1, 0, 0};
  const float w[2] = {0.6f, 3.0f};  // class 0, class 1
  float dz[3];
  const double loss = bce_with_sigmoid(z, y, 3, dz, nullptr, w);
  // Σ w_y · BCE / n and ∂/∂z_i = w_y (p_i − y_i) / n.
  const double l0 = -std::log(sigmoid(0.5)), l1 = -std::log(1 - sigmoid(-1)),
               l2 = -std::log(1 - sigmoid(2));
  EXPECT_NEAR(loss, (3.0 * l0 + 0.6 * l1 + 0.6 * l2) / 3, 1e-6);
  EXPECT_NEAR(dz[0], 3.0 * (sigmoid(0.5) - 1) / 3, 1e-6);
  EXPECT_NEAR(dz[1], 0.6 * sigmoid(-1) / 3, 1e-6);
  EXPECT_NEAR(dz[2], 0.6 * sigmoid(2) / 3, 1e-6);
}

TEST(WeightedLoss, SoftmaxCrossEntropyAndGradientByHand) {
  const float z[6] = {1.0f, 0.0f, -1.0f, 0.2f, 0.3f, 0.1f};
  const int32_t y[2] = {2, 0};
  const float w[3] = {0.5f, 1.0f, 4.0f};
  float dz[6];
  const double loss = softmax_cross_entropy(z, y, 2, 3, dz, nullptr, w);
  double expect = 0;
  for (int i = 0; i < 2; ++i) {
    const float* zi = z + 3 * i;
    const double s = std::exp(zi[0]) + std::exp(zi[1]) + std::exp(zi[2]);
    expect += w[y[i]] * -std::log(std::exp(zi[y[i]]) / s);
    for (int k = 0; k < 3; ++k)
      EXPECT_NEAR(dz[3 * i + k], w[y[i]] * (std::exp(zi[k]) / s - (k == y[i])) / 2, 1e-6)
          << i << "," << k;
  }
  EXPECT_NEAR(loss, expect / 2, 1e-6);
}

TEST(WeightedLoss, UnitWeightsAreTheUnweightedLossBitForBit) {
  const float z[4] = {0.3f, -2.0f, 1.5f, 0.0f};
  const int32_t y[4] = {1, 0, 1, 0};
  const float ones[2] = {1.0f, 1.0f};
  float d1[4], d2[4];
  LossAndCorrect a = loss_and_correct(z, y, 4, 1, d1);
  LossAndCorrect b = loss_and_correct(z, y, 4, 1, d2, ones);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.correct, b.correct);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(d1[i], d2[i]);
}

// Three classes, 800 : 150 : 50 images. Over 50 epochs of 1,000 draws (N = 50,000), a class's
// count is Binomial(N, 1/3): σ = √(N · 1/3 · 2/3) ≈ 105, so 5σ ≈ 527 draws (1.05% of N) bounds
// it with failure odds below 1e-6 for an arbitrary seed; the seed is fixed, so the test is exact.
TEST(BalancedSampler, ClassesEquallyLikelyAndReproducible) {
  std::vector<uint32_t> images;
  std::vector<int32_t> labels;
  const int counts[3] = {800, 150, 50};
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < counts[c]; ++i) {
      images.push_back(static_cast<uint32_t>(2 * images.size() + 1));  // ids need not be dense
      labels.push_back(c);
    }
  std::map<uint32_t, int32_t> label_of;
  for (size_t i = 0; i < images.size(); ++i) label_of[images[i]] = labels[i];
  const int epochs = 50, crops = 4;
  std::vector<int64_t> seen(3, 0);
  std::set<uint32_t> minority_seen;
  for (int e = 0; e < epochs; ++e) {
    const std::vector<Item> items = balanced_epoch_items(images, labels, crops, false, 11, e);
    ASSERT_EQ(items.size(), images.size());  // the epoch keeps its length
    for (const Item& it : items) {
      ASSERT_TRUE(label_of.count(it.image)) << it.image;
      ASSERT_LT(it.crop, static_cast<uint32_t>(crops));
      ++seen[label_of[it.image]];
      if (label_of[it.image] == 2) minority_seen.insert(it.image);
    }
  }
  const double n = epochs * images.size(), sigma = std::sqrt(n * (1.0 / 3) * (2.0 / 3));
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(seen[c], n / 3, 5 * sigma) << "class " << c;
  EXPECT_EQ(minority_seen.size(), 50u);  // every minority image is drawn (~333 draws each)

  // A pure function of (seed, epoch): same inputs, same items; another seed or epoch differs.
  auto same = [](const std::vector<Item>& a, const std::vector<Item>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i].image != b[i].image || a[i].crop != b[i].crop) return false;
    return true;
  };
  const auto a = balanced_epoch_items(images, labels, crops, false, 11, 3);
  EXPECT_TRUE(same(a, balanced_epoch_items(images, labels, crops, false, 11, 3)));
  EXPECT_FALSE(same(a, balanced_epoch_items(images, labels, crops, false, 12, 3)));
  EXPECT_FALSE(same(a, balanced_epoch_items(images, labels, crops, false, 11, 4)));
  // --all-crops: an epoch of images × crops draws.
  EXPECT_EQ(balanced_epoch_items(images, labels, crops, true, 11, 0).size(), images.size() * crops);
}

TEST(Selection, BalancedPicksAnotherEpochThanAccuracy) {
  // Epoch 1 predicts the majority well (high accuracy, poor balanced accuracy), epoch 2 the
  // reverse, epoch 3 ties epoch 2's balanced accuracy at a higher loss.
  std::vector<EpochMetrics> ms(3);
  const double acc[3] = {0.90, 0.85, 0.80}, bal[3] = {0.55, 0.80, 0.80}, loss[3] = {0.3, 0.4, 0.5};
  for (int e = 0; e < 3; ++e) {
    ms[e].epoch = e + 1;
    ms[e].has_val = true;
    ms[e].val_accuracy = acc[e];
    ms[e].val_balanced_accuracy = bal[e];
    ms[e].val_loss = loss[e];
  }
  auto pick = [&](const std::string& select) {
    size_t best = 0;
    for (size_t e = 1; e < ms.size(); ++e)
      if (better_epoch(ms[e], ms[best], select)) best = e;
    return ms[best].epoch;
  };
  EXPECT_EQ(pick("accuracy"), 1);
  EXPECT_EQ(pick("balanced"), 2);
  EXPECT_EQ(selection_name("accuracy"), "val_accuracy");
  EXPECT_EQ(selection_name("balanced"), "val_balanced_accuracy");
}

TEST(ImbalanceCli, UsageErrorsNameTheFlag) {
  const char* cases[][2] = {{"--class-weight balance", "--class-weight"},
                            {"--class-weight ''", "--class-weight"},
                            {"--sampler weighted", "--sampler"},
                            {"--select val_accuracy", "--select"},
                            {"--knn 5 --class-weight balanced", "--class-weight"},
                            {"--knn 5 --sampler balanced", "--sampler"},
                            {"--knn 5 --select balanced", "--select"}};
  for (auto& c : cases) {
    testing::ToolRun r = testing::train_head("--train a --test b --out c " + std::string(c[0]));
    EXPECT_EQ(r.rc, 2) << c[0] << ": " << r.output;
    EXPECT_NE(r.output.find(c[1]), std::string::npos) << r.output;
  }
}

TEST(ImbalanceSweep, ClassWeightAndSamplerAreSweepableSelectIsNot) {
  const SweepSpec spec = parse_sweep_spec("class_weight=none,balanced;sampler=balanced");
  const std::vector<TrainParams> ps = expand_grid(spec, TrainParams{});
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0].class_weight, "none");
  EXPECT_EQ(ps[1].class_weight, "balanced");
  EXPECT_EQ(ps[1].sampler, "balanced");
  EXPECT_EQ(spec.to_json().dump(),
            R"({"class-weight":["none","balanced"],"sampler":["balanced"]})");
  EXPECT_EQ(parse_sweep_spec(R"({"class_weight": ["balanced"]})").axes.size(), 1u);
  EXPECT_EQ(config_settings_json(ps[1])["class_weight"], "balanced");
  EXPECT_FALSE(config_settings_json(ps[0]).contains("class_weight"));
  // At the defaults a configuration's settings, hence its id, are what they were before these
  // settings existed, so sweep directories made then still resume.
  std::set<std::string> keys;
  const nlohmann::json defaults = config_settings_json(TrainParams{});
  for (const auto& [k, v] : defaults.items()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"lr", "weight_decay", "dropout", "hidden", "batch",
                                         "epochs", "standardize", "all_crops", "seed"}));
  EXPECT_EQ(schedule_key(ps[0]), schedule_key(ps[1]));  // the class weight leaves batches alone
  EXPECT_NE(schedule_key(TrainParams{}), schedule_key(ps[0]));  // the sampler does not
  for (const char* bad : {"class-weight=balance", "sampler=1", R"({"sampler": [true]})",
                          "select=accuracy,balanced"}) {
    try {
      parse_sweep_spec(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_TRUE(msg.find("sampler") != std::string::npos ||
                  msg.find("class-weight") != std::string::npos ||
                  msg.find("select") != std::string::npos)
          << msg;
    }
  }
}

}  // namespace
}  // namespace vggcache
