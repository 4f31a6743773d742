#include "train_head/imbalance.h"

#include "common/error.h"

namespace vggcache {

std::vector<float> balanced_class_weights(const std::vector<int32_t>& labels, int classes) {
  std::vector<int64_t> count(static_cast<size_t>(classes), 0);
  for (int32_t y : labels) {
    if (y < 0 || y >= classes)
      throw Error(ErrorKind::kCorrupt, "class weights: label " + std::to_string(y) +
                                           " outside the cache's " + std::to_string(classes) +
                                           " classes");
    ++count[static_cast<size_t>(y)];
  }
  int present = 0;
  for (int64_t c : count) present += c > 0;
  std::vector<float> w(static_cast<size_t>(classes), 0.0f);
  for (size_t c = 0; c < w.size(); ++c)
    if (count[c] > 0)
      w[c] = static_cast<float>(static_cast<double>(labels.size()) /
                                (static_cast<double>(present) * static_cast<double>(count[c])));
  return w;
}

bool better_epoch(const EpochMetrics& a, const EpochMetrics& best, const std::string& select) {
  const bool balanced = select == "balanced";
  const double ma = balanced ? a.val_balanced_accuracy : a.val_accuracy;
  const double mb = balanced ? best.val_balanced_accuracy : best.val_accuracy;
  if (ma != mb) return ma > mb;
  return a.val_loss < best.val_loss;
}

std::string selection_name(const std::string& select) {
  return select == "balanced" ? "val_balanced_accuracy" : "val_accuracy";
}

}  // namespace vggcache
