// Which network extract (and predict) runs: `--backbone vgg16|resnet50|torchscript:FILE`. No
// LibTorch here: the factories live behind extract/feature_net.h.
#pragma once
#include <memory>
#include <string>

#include "extract/feature_net.h"

namespace vggcache {

struct BackboneSpec {
  std::string name = "vgg16";  // vgg16 | resnet50 | torchscript (as CacheMeta::backbone records)
  std::string file;            // the TorchScript file (torchscript only)
};

// Parses the flag's value. Throws Error(kInvalidArgument) naming the flag on anything else.
BackboneSpec parse_backbone(const std::string& value);

// The network `spec` names, with options.weights as its weights (vgg16, resnet50) or the module
// file (torchscript: options.weights is replaced by spec.file). Fills `id`. A TorchScript
// network's dim() is 0 until learn_output_dim() (extract/pipeline.h) has run it.
std::unique_ptr<FeatureNet> make_backbone_net(const BackboneSpec& spec, NetOptions options,
                                              WeightsIdentity* id);

}  // namespace vggcache
