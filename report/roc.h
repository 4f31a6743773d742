// ROC curve and its area for two-class predictions (score = probability of the positive class).
#pragma once
#include <string>
#include <vector>

namespace vggcache {

struct RocCurve {
  std::vector<double> fpr, tpr;  // from (0, 0) to (1, 1), one point per distinct score
  double auc = 0.0;              // NaN when either class is absent
  int positives = 0, negatives = 0;
};

// Trapezoidal area under the curve; tied scores form one diagonal step, so the AUC equals the
// Mann–Whitney probability P(score of a positive > score of a negative) with ties counted ½.
RocCurve roc_curve(const std::vector<double>& scores, const std::vector<bool>& positive);

}  // namespace vggcache
