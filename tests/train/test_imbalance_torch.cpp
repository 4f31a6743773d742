// Class imbalance end to end: on a 9:1 two-class training set (synthetic Gaussian clusters that
// overlap, so an unweighted head leans to the majority), --class-weight balanced must raise the
// test balanced accuracy over none, and a PyTorch head trained with the same weights
// (tests/py/ref_head_train.py --class-weight balanced) must land within 2 points of ours; both
// as means over 3 seeds; the weights summary.json reports are scikit-learn's on the exported
// training labels. Small on purpose (32-d vectors, 500 training images, 40 epochs): about 15 s on
// 2 cores. Also: a sweep over --class-weight and --sampler ranked by --select balanced, each
// configuration equal to its single run.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "train_fixtures.h"

namespace vggcache {
namespace {

using nlohmann::json;
using testing::run_ok;
using testing::shell_quote;

// The selected head's test balanced accuracy of a train_head run.
double balanced_accuracy_of(const std::string& run_dir) {
  const json s = json::parse(testing::read_file(run_dir + "/summary.json"));
  return s.at("selected_test").at("balanced_accuracy").get<double>();
}

TEST(ImbalanceTorch, BalancedWeightsRaiseBalancedAccuracyAndMatchTorch) {
  const std::string bin = testing::bin_dir();
  testing::TempDir tmp;
  const std::string train = tmp / "train", test = tmp / "test";
  testing::SyntheticSpec spec;
  spec.dim = 32;
  spec.separation = 0.25f;
  spec.centre_seed = 5;
  spec.class_images = {450, 50};  // 9:1
  spec.seed = 1;
  testing::make_synthetic_cache(train, spec);
  spec.class_images = {200, 200};  // a balanced test set: accuracy and balanced accuracy agree
  spec.seed = 2;
  testing::make_synthetic_cache(test, spec);
  run_ok(shell_quote(bin + "/featcache") + " export " + shell_quote(train) + " " +
         shell_quote(tmp / "train_x"));
  run_ok(shell_quote(bin + "/featcache") + " export " + shell_quote(test) + " " +
         shell_quote(tmp / "test_x"));
  if (HasFailure()) return;

  const std::string settings =
      " --epochs 40 --batch 50 --hidden 32 --dropout 0.2 --lr 1e-3 --threads 2";
  double none = 0, weighted = 0, sampled = 0, torch = 0;
  for (int seed = 0; seed < 3; ++seed) {
    const std::string s = " --seed " + std::to_string(seed);
    auto ours = [&](const std::string& name, const std::string& flags) {
      const std::string out = tmp / (name + std::to_string(seed));
      run_ok(shell_quote(bin + "/train_head") + " --train " + shell_quote(train) + " --test " +
             shell_quote(test) + " --out " + shell_quote(out) + settings + s + " --quiet" + flags);
      return HasFailure() ? 0.0 : balanced_accuracy_of(out);
    };
    const double a = ours("none", ""), b = ours("weighted", " --class-weight balanced"),
                 c = ours("sampled", " --sampler balanced");
    const std::string ref =
        run_ok(testing::python() + " " +
               shell_quote(testing::source_dir() + "/tests/py/ref_head_train.py") + " --train " +
               shell_quote(tmp / "train_x") + " --test " + shell_quote(tmp / "test_x") + settings +
               s + " --class-weight balanced");
    if (HasFailure()) return;
    const size_t line = ref.rfind("\n{");  // the JSON line (warnings may precede it)
    const double t = json::parse(ref.substr(line == std::string::npos ? 0 : line + 1))
                         .at("test_balanced_accuracy")
                         .get<double>();
    std::printf(
        "seed %d balanced accuracy: none %.2f%%, class-weight %.2f%%, sampler %.2f%%, "
        "PyTorch class-weight %.2f%%\n",
        seed, 100 * a, 100 * b, 100 * c, 100 * t);
    none += a / 3;
    weighted += b / 3;
    sampled += c / 3;
    torch += t / 3;
  }
  std::printf(
      "mean balanced accuracy: none %.2f%%, class-weight %.2f%%, sampler %.2f%%, "
      "PyTorch class-weight %.2f%%\n",
      100 * none, 100 * weighted, 100 * sampled, 100 * torch);
  // The flags are recorded, and --select balanced names its selection.
  const json w = json::parse(testing::read_file(tmp / "weighted0/summary.json"));
  // The weights used are scikit-learn's over the training images (one record each here).
  std::string sk;
  const int sk_rc =
      testing::run_command(testing::python() +
                               " -c 'import sys, json, numpy as np\n"
                               "from sklearn.utils.class_weight import compute_class_weight\n"
                               "y = np.load(sys.argv[1])\n"
                               "print(json.dumps(compute_class_weight(\"balanced\", "
                               "classes=np.unique(y), y=y).tolist()))' " +
                               shell_quote(tmp / "train_x.labels.npy"),
                           &sk);
  ASSERT_EQ(w["class_weights"].size(), 2u);
  if (sk_rc != 0 && sk.find("No module named") != std::string::npos && !testing::in_ci()) {
    std::printf("scikit-learn not installed: class weights not compared\n");
  } else {
    ASSERT_EQ(sk_rc, 0) << sk;
    const json theirs = json::parse(sk.substr(sk.rfind('[')));
    for (int c = 0; c < 2; ++c)
      EXPECT_NEAR(w["class_weights"][c].get<double>(), theirs[c].get<double>(), 1e-6) << c;
  }
  EXPECT_EQ(w["settings"]["class_weight"], "balanced");
  EXPECT_EQ(w["settings"]["sampler"], "uniform");
  EXPECT_EQ(w["settings"]["select"], "accuracy");
  EXPECT_EQ(json::parse(testing::read_file(tmp / "sampled0/summary.json"))["settings"]["sampler"],
            "balanced");
  run_ok(shell_quote(bin + "/train_head") + " --train " + shell_quote(train) + " --test " +
         shell_quote(test) + " --out " + shell_quote(tmp / "select") +
         " --epochs 3 --hidden 8 --val-fraction 0.2 --select balanced --quiet");
  const json sel = json::parse(testing::read_file(tmp / "select/summary.json"));
  EXPECT_EQ(sel["selection"], "val_balanced_accuracy");
  EXPECT_EQ(sel["settings"]["select"], "balanced");
  EXPECT_TRUE(sel["best"]["val_balanced_accuracy"].is_number());

  EXPECT_GT(weighted, none + 0.05);
  EXPECT_GT(sampled, none + 0.05);
  EXPECT_NEAR(weighted, torch, 0.02);
  testing::report_numerics("mean balanced accuracy vs torch, class-weight balanced, 3 seeds",
                           std::abs(weighted - torch), 0.02);
}

TEST(ImbalanceSweep, ConfigurationsEqualTheirSingleRunsRankedByBalancedAccuracy) {
  const std::string bin = testing::bin_dir();
  testing::TempDir tmp;
  const std::string train = tmp / "train", test = tmp / "test";
  testing::SyntheticSpec spec;
  spec.dim = 16;
  spec.separation = 0.3f;
  spec.class_images = {180, 20};
  testing::make_synthetic_cache(train, spec);
  spec.class_images = {50, 50};
  spec.seed = 3;
  testing::make_synthetic_cache(test, spec);
  const std::string common = " --train " + shell_quote(train) + " --test " + shell_quote(test) +
                             " --epochs 4 --batch 20 --hidden 8 --val-fraction 0.2 --seed 3 "
                             "--select balanced --threads 2 --quiet";
  run_ok(shell_quote(bin + "/train_head") + common + " --out " + shell_quote(tmp / "sw") +
         " --sweep 'class-weight=none,balanced;sampler=uniform,balanced'");
  if (HasFailure()) return;
  const json results = json::parse(testing::read_file(tmp / "sw/results.json"));
  EXPECT_NE(results["selection"].get<std::string>().find("val_balanced_accuracy"),
            std::string::npos);
  const json& rows = results["rows"];
  ASSERT_EQ(rows.size(), 4u);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i > 0) {
      const json &p = rows[i - 1], &q = rows[i];
      EXPECT_TRUE(p["val_balanced_accuracy"] > q["val_balanced_accuracy"] ||
                  (p["val_balanced_accuracy"] == q["val_balanced_accuracy"] &&
                   p["val_loss"] <= q["val_loss"]))
          << i;
    }
    const json& st = rows[i]["settings"];
    const std::string out = tmp / ("single" + std::to_string(i));
    run_ok(shell_quote(bin + "/train_head") + common + " --out " + shell_quote(out) +
           " --class-weight " + st["class_weight"].get<std::string>() + " --sampler " +
           st["sampler"].get<std::string>());
    if (HasFailure()) return;
    EXPECT_EQ(testing::read_file(out + "/head.bin"),
              testing::read_file(tmp / ("sw/" + rows[i]["id"].get<std::string>() + "/head.bin")))
        << st.dump();
    const json s = json::parse(testing::read_file(out + "/summary.json"));
    EXPECT_EQ(s["selection"], "val_balanced_accuracy");
    EXPECT_EQ(s["selected_epoch"], rows[i]["best_epoch"]) << st.dump();
  }
  const std::string command =
      json::parse(testing::read_file(tmp / "sw/best.json"))["command"].get<std::string>();
  EXPECT_NE(command.find("--select balanced"), std::string::npos) << command;
}

}  // namespace
}  // namespace vggcache
