#include "extract/backbone.h"

#include <fmt/format.h>

#include "common/error.h"

namespace vggcache {

BackboneSpec parse_backbone(const std::string& value) {
  BackboneSpec s;
  const std::string ts = "torchscript:";
  if (value == "vgg16" || value == "resnet50") {
    s.name = value;
  } else if (value.rfind(ts, 0) == 0 && value.size() > ts.size()) {
    s.name = "torchscript";
    s.file = value.substr(ts.size());
  } else {
    throw Error(
        ErrorKind::kInvalidArgument,
        fmt::format("--backbone must be vgg16, resnet50 or torchscript:FILE (got '{}')", value));
  }
  return s;
}

std::unique_ptr<FeatureNet> make_backbone_net(const BackboneSpec& spec, NetOptions options,
                                              WeightsIdentity* id) {
  if (spec.name == "resnet50") return make_resnet50_net(options, id);
  if (spec.name == "torchscript") {
    options.weights = spec.file;
    return make_torchscript_net(options, id);
  }
  return make_vgg16_net(options, id);
}

}  // namespace vggcache
