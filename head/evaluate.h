// Evaluation of a head on a set of images: the probabilities of all cached views of an image are
// averaged (test-time augmentation) and the image is classified from the average. Labels are the
// images' own (the seed's loop compared test outputs to training labels; this does not).
#pragma once
#include <cstdint>
#include <vector>

#include "head/feature_source.h"
#include "head/head_model.h"

namespace vggcache {

struct EvalResult {
  int images = 0;
  double loss = 0.0;      // mean loss of the averaged probabilities (BCE / NLL, log clamped)
  double accuracy = 0.0;  // fraction of images classified correctly
  std::vector<std::vector<int64_t>> confusion;  // classes × classes, [true][predicted]
  // The averaged probabilities, images × classes in the order of the `images` argument: what
  // RUN_DIR/predictions.csv and the report show, so they agree with the confusion matrix.
  std::vector<float> probs;
};

// `max_vectors`: vectors per forward pass (bounds the gather buffer).
EvalResult evaluate_head(const HeadWeights& w, FeatureSource& src,
                         const std::vector<uint32_t>& images, const Standardizer* s,
                         int max_vectors = 512);

// Several heads on the same images (a sweep's heads after an epoch): each pass's vectors are
// gathered once and the heads predict from them concurrently. Result h is what
// evaluate_head(*heads[h], ...) gives, bit for bit (same passes, same arithmetic per head).
std::vector<EvalResult> evaluate_heads(const std::vector<const HeadWeights*>& heads,
                                       FeatureSource& src, const std::vector<uint32_t>& images,
                                       const Standardizer* s, int max_vectors = 512);

// Per-class precision and recall from a confusion matrix (0 where undefined).
void precision_recall(const std::vector<std::vector<int64_t>>& confusion,
                      std::vector<double>* precision, std::vector<double>* recall);

// Balanced accuracy: the mean recall over the classes that occur as true labels (scikit-learn's
// balanced_accuracy_score). 0 for an empty matrix.
double balanced_accuracy(const std::vector<std::vector<int64_t>>& confusion);

// Macro F1: the mean of the per-class F1 = 2·P·R / (P + R) over the classes that occur as true
// or predicted labels, F1 = 0 where P + R = 0 (scikit-learn's f1_score(average="macro") with its
// default labels and zero_division). 0 for an empty matrix.
double macro_f1(const std::vector<std::vector<int64_t>>& confusion);

}  // namespace vggcache
