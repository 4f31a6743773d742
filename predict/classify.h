// Classification of image files with VGG16 features and a trained head, reusing extract's view
// preparation (decode, eval view or seeded RandomResizedCrop, normalisation) and train_head's
// evaluation (standardisation, forward pass, averaging of the views' probabilities), so predict
// gives the numbers train_head reports for the same images.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/cache_meta.h"
#include "extract/backbone.h"
#include "extract/feature_net.h"
#include "extract/params.h"
#include "head/head_file.h"
#include "predict/params.h"

namespace vggcache {

// The view size the head's features were extracted at (head.features["size"]).
// Throws Error(kCorrupt) naming the file when the head does not record it.
int head_view_size(const HeadFile& head, const std::string& head_path);

// The network the head's features came from (head.features' backbone, vgg16 when absent), with
// the file --backbone torchscript:FILE names for a TorchScript head. Throws Error(kMismatch) when
// --backbone names another network than the head's, Error(kInvalidArgument) when a TorchScript
// head has no --backbone torchscript:FILE, when --weights is given with one, or missing without.
BackboneSpec head_backbone(const HeadFile& head, const std::string& head_path,
                           const PredictParams& p);

// The extract settings predict's views are made with: the eval view at `size`, or with
// p.tta = K, K crops per image drawn as extract --crops K --seed does, on `backbone`. Paths are
// used as given.
ExtractParams view_params(const PredictParams& p, int size, const BackboneSpec& backbone);

// Refuses features the head was not trained on, before any image is touched: Error(kMismatch)
// naming both weights (head vs --weights) or the other differing setting. `views` as from
// view_params(); `dim` as from network_dim().
void check_head_features(const HeadFile& head, const std::string& head_path,
                         const ExtractParams& views, const WeightsIdentity& weights, uint32_t dim);

// The floats per view that LibTorch computes for `head`: VGG16's pooled features (net.dim()), or,
// for a head carrying a tuned block 5 (head_file.h version 2), the pool4 map's C·h·w at `size`,
// which the tuned block 5 then turns into the head's 25088 inputs.
uint32_t network_dim(const HeadFile& head, FeatureNet& net, int size);

// Error(kMismatch) when the head does not take `dim` features (the network's, per view).
void check_head_dim(const HeadFile& head, const std::string& head_path, uint32_t dim);

struct PredictedImage {
  uint32_t index = 0;  // position in the input list (the seed of its --tta crops)
  std::string path;
  std::vector<float> probs;  // one per class, averaged over the views
  int predicted = 0;         // argmax (two classes: p_<second> > 0.5), as train_head
};

struct SkippedInput {
  std::string path;
  std::string reason;
};

struct PredictResult {
  std::vector<PredictedImage> images;  // in input order
  std::vector<SkippedInput> skipped;   // files that could not be decoded
  uint64_t views = 0;                  // views run through the network
  double seconds = 0;
};

// Classifies `files` with the views `views` describes (bad files are warned about and skipped,
// never fatal). `net` must be the network check_head_features() accepted.
PredictResult classify_images(const ExtractParams& views, const HeadFile& head,
                              const std::vector<std::string>& files, FeatureNet& net);

}  // namespace vggcache
