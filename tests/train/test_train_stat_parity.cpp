// Statistical parity with PyTorch on carbike64 features: the same settings run by train_head and
// by tests/py/ref_head_train.py (torch.optim.Adam, features held in memory) for 3 seeds; the mean
// test accuracies must agree within 2 points. Features come from `extract` with random VGG16
// weights (fast, no download; still separable enough to learn). Slow: a few minutes on 2 cores.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace vggcache {
namespace {

using nlohmann::json;
using testing::run_ok;
using testing::shell_quote;

TEST(TrainStatParity, MeanAccuracyOverThreeSeedsWithinTwoPointsOfTorch) {
  VGGCACHE_REQUIRE_CARBIKE(data);
  const std::string bin = testing::bin_dir();
  for (const char* tool : {"extract", "featcache", "train_head"}) {
    if (!std::filesystem::exists(bin + "/" + tool)) {
      if (testing::in_ci()) FAIL() << tool << " not built";
      GTEST_SKIP() << tool << " not built in " << bin;
    }
  }
  testing::TempDir tmp;
  const std::string train = tmp / "train", test = tmp / "test";
  // Two augmented crops per training image (one drawn per epoch), one eval view per test image.
  run_ok(shell_quote(bin + "/extract") + " --data " + shell_quote(data + "/train") + " --out " +
         shell_quote(train) + " --weights random:1 --crops 2 --threads 2 --quiet");
  run_ok(shell_quote(bin + "/extract") + " --data " + shell_quote(data + "/test") + " --out " +
         shell_quote(test) + " --weights random:1 --eval --threads 2 --quiet");
  run_ok(shell_quote(bin + "/featcache") + " export " + shell_quote(train) + " " +
         shell_quote(tmp / "train_x"));
  run_ok(shell_quote(bin + "/featcache") + " export " + shell_quote(test) + " " +
         shell_quote(tmp / "test_x"));
  if (HasFailure()) return;

  // Random-weight features are small (mean ~0.07): standardised, lr 1e-4 trains stably to ~79%.
  const std::string settings =
      " --epochs 10 --batch 100 --hidden 256 --dropout 0.5 --lr 1e-4 "
      "--standardize --threads 2";
  double ours = 0, theirs = 0;
  for (int seed = 0; seed < 3; ++seed) {
    const std::string out = tmp / ("run" + std::to_string(seed));
    run_ok(shell_quote(bin + "/train_head") + " --train " + shell_quote(train) + " --test " +
           shell_quote(test) + " --out " + shell_quote(out) + settings + " --quiet --seed " +
           std::to_string(seed));
    std::string ref =
        run_ok(testing::python() + " " +
               shell_quote(testing::source_dir() + "/tests/py/ref_head_train.py") + " --train " +
               shell_quote(tmp / "train_x") + " --test " + shell_quote(tmp / "test_x") + settings +
               " --seed " + std::to_string(seed));
    if (HasFailure()) return;
    double a = json::parse(testing::read_file(out + "/summary.json"))["final"]["test_accuracy"];
    size_t line = ref.rfind("\n{");  // the JSON line (warnings may precede it)
    double b = json::parse(ref.substr(line == std::string::npos ? 0 : line + 1))["test_accuracy"];
    std::printf("seed %d: train_head %.2f%%, PyTorch %.2f%%\n", seed, 100 * a, 100 * b);
    ours += a / 3;
    theirs += b / 3;
  }
  std::printf("mean test accuracy: train_head %.2f%%, PyTorch %.2f%%\n", 100 * ours, 100 * theirs);
  EXPECT_GT(ours, 0.7);  // it learned something
  EXPECT_NEAR(ours, theirs, 0.02);
  testing::report_numerics("mean test accuracy vs torch, 3 seeds", std::abs(ours - theirs), 0.02);
}

}  // namespace
}  // namespace vggcache
