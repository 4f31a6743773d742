// Class imbalance: scikit-learn's "balanced" class weights for the loss, and which validation
// metric selects the saved epoch (--select). The balanced sampler is in batch_schedule.h.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train_head/trainer.h"  // EpochMetrics

namespace vggcache {

// compute_class_weight("balanced"): w_c = n / (k · n_c) over `labels` (one per training image),
// k the number of classes present. Size `classes`, indexed by label; a class absent from
// `labels` gets 0 (no sample carries it). Labels outside [0, classes) throw Error(kCorrupt).
std::vector<float> balanced_class_weights(const std::vector<int32_t>& labels, int classes);

// Whether epoch `a` beats `best` on validation under --select `select` ("accuracy": accuracy;
// "balanced": balanced accuracy), then the lower validation loss; a full tie keeps `best` (the
// earlier epoch).
bool better_epoch(const EpochMetrics& a, const EpochMetrics& best, const std::string& select);

// summary.json's `selection` for a run with validation: "val_accuracy" or
// "val_balanced_accuracy".
std::string selection_name(const std::string& select);

}  // namespace vggcache
