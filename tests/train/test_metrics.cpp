// Balanced accuracy and macro F1 from a confusion matrix (head/evaluate.h), on matrices worked out
// by hand, including classes absent from the true labels or from both true and predicted labels
// (where scikit-learn's definitions decide what is averaged).
#include <gtest/gtest.h>

#include "head/evaluate.h"

namespace vggcache {
namespace {

TEST(Metrics, PerfectClassifier) {
  EXPECT_DOUBLE_EQ(balanced_accuracy({{5, 0}, {0, 5}}), 1.0);
  EXPECT_DOUBLE_EQ(macro_f1({{5, 0}, {0, 5}}), 1.0);
}

TEST(Metrics, ImbalancedByHand) {
  // Rows = true class. Class 2 is neither true nor predicted: left out of both means.
  // Recall: 8/10, 1/2 → balanced 0.65 (accuracy would be 9/12 = 0.75).
  // Precision: 8/9, 1/3. F1: 2·(8/9)·0.8 / (8/9 + 0.8) = 12.8/15.2; 2·(1/3)·0.5 / (5/6) = 0.4.
  const std::vector<std::vector<int64_t>> c = {{8, 2, 0}, {1, 1, 0}, {0, 0, 0}};
  EXPECT_NEAR(balanced_accuracy(c), 0.65, 1e-15);
  EXPECT_NEAR(macro_f1(c), (12.8 / 15.2 + 0.4) / 2, 1e-15);
  EXPECT_NEAR(macro_f1(c), 0.6210526315789474, 1e-15);
}

TEST(Metrics, ClassPredictedButNeverTrue) {
  // Class 2 is predicted once and never true: no recall for balanced accuracy (2/3 and 1 → 5/6),
  // but an F1 of 0 in the macro mean (0.8, 1, 0 → 0.6).
  const std::vector<std::vector<int64_t>> c = {{2, 0, 1}, {0, 2, 0}, {0, 0, 0}};
  EXPECT_NEAR(balanced_accuracy(c), 5.0 / 6.0, 1e-15);
  EXPECT_NEAR(macro_f1(c), 0.6, 1e-15);
}

TEST(Metrics, EmptyMatrixIsZeroNotNaN) {
  EXPECT_EQ(balanced_accuracy({}), 0.0);
  EXPECT_EQ(macro_f1({{0, 0}, {0, 0}}), 0.0);
}

}  // namespace
}  // namespace vggcache
