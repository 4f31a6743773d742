#include "report/roc.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace vggcache {

RocCurve roc_curve(const std::vector<double>& scores, const std::vector<bool>& positive) {
  RocCurve r;
  const size_t n = std::min(scores.size(), positive.size());
  for (size_t i = 0; i < n; ++i) (positive[i] ? r.positives : r.negatives)++;
  if (r.positives == 0 || r.negatives == 0) {
    r.auc = NAN;
    return r;
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  r.fpr.push_back(0);
  r.tpr.push_back(0);
  double tp = 0, fp = 0, area = 0;
  for (size_t i = 0; i < n;) {
    // Every image at this threshold moves the point at once.
    const double s = scores[order[i]];
    for (; i < n && scores[order[i]] == s; ++i) (positive[order[i]] ? tp : fp) += 1;
    const double x = fp / r.negatives, y = tp / r.positives;
    area += (x - r.fpr.back()) * (y + r.tpr.back()) / 2;
    r.fpr.push_back(x);
    r.tpr.push_back(y);
  }
  r.auc = area;
  return r;
}

}  // namespace vggcache
