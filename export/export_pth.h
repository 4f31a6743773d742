// A trained head and the VGG16 weights its features came from, as one torchvision model:
// `m = torchvision.models.vgg16(); m.classifier = <the head>; m.load_state_dict(torch.load(F))`.
// The head becomes classifier = Sequential(Linear(25088, H), ReLU(inplace=True), Dropout(p),
// Linear(H, O), Sigmoid() | Softmax(dim=1)): state_dict keys classifier.0.* and classifier.3.*
// beside features.N.* (torchvision's `features` indices). torchvision's avgpool is
// AdaptiveAvgPool2d((7, 7)), the pooling the head's 25088 features were computed with, so
// torchvision's own forward gives the head's input.
//
// Standardisation (a head trained with --standardize computes x' = (x − mean) / std first) has no
// place in that layout, so it is folded into the first Linear, in float64 and rounded to float32
// once: W1' = W1 / std (per input column), b1' = b1 − W1'·mean.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "common/cache_meta.h"
#include "head/head_file.h"
#include "weights/pth_reader.h"
#include "weights/pth_writer.h"

namespace vggcache {

inline constexpr int kVgg16PooledDim = 512 * 7 * 7;

// Refuses a head that cannot take torchvision vgg16's pooled features: Error(kMismatch) naming
// the file when its input is not 25088-d, Error(kCorrupt) when its standardisation cannot be
// folded (a std that is not positive and finite, a non-finite mean).
void check_exportable(const HeadFile& head, const std::string& head_path);

// The network the head was trained behind: `features` as given, except that a head fine-tuned
// with block 5 (head.bin version 2) brings its own conv5_1..conv5_3, which replace
// features.24/26/28 (its blocks 1–4 stay the file's: they were frozen). `features` as
// load_vgg16_features() gives them (every conv present, torchvision's shapes).
StateDict network_features(const HeadFile& head, StateDict features);

// The C·h·w of the map the head's training cache held: VGG16's pool4 for a head with a tuned
// block 5 (512 × ⌊size/16⌋²), else `pooled_dim` (the pooled features).
uint32_t trained_input_dim(const HeadFile& head, int size, uint32_t pooled_dim);

// features.N.{weight,bias} in torchvision's order (network_features()' conv5 for a tuned head),
// then classifier.0.{weight,bias} (the folded first Linear) and classifier.3.{weight,bias}.
// `features` as load_vgg16_features() gives them; Error(kBadWeights) when one is missing.
OrderedStateDict torchvision_state_dict(const HeadFile& head, const StateDict& features);

// The Python that rebuilds the classifier and loads FILE (for the sidecar and the README).
std::string python_loader(const HeadFile& head, const std::string& file);

struct ExportInfo {
  std::string model_path, model_sha256;  // the written .pth
  std::string head_path, head_sha256;
  WeightsIdentity weights;
};

// The sidecar OUT.json: format, layout, loader snippet, classes, head architecture, weights and
// head identities, preprocessing (size, mean, std, interpolation: the head's feature settings),
// the standardisation folding, the tuned block 5 when there is one, the vggcache version.
nlohmann::json export_sidecar(const HeadFile& head, const ExportInfo& info);

}  // namespace vggcache
