// ResNet-50 backbone (issue #16): not built yet.
#include "common/error.h"
#include "extract/feature_net.h"

namespace vggcache {

std::unique_ptr<FeatureNet> make_resnet50_net(const NetOptions&, WeightsIdentity*) {
  throw Error(ErrorKind::kInvalidArgument, "--backbone resnet50 is not built yet");
}

}  // namespace vggcache
