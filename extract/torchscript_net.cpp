// TorchScript backbone (issue #16): not built yet.
#include "common/error.h"
#include "extract/feature_net.h"

namespace vggcache {

std::unique_ptr<FeatureNet> make_torchscript_net(const NetOptions&, WeightsIdentity*) {
  throw Error(ErrorKind::kInvalidArgument, "--backbone torchscript:FILE is not built yet");
}

}  // namespace vggcache
