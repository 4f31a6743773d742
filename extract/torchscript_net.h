// The TorchScript backbone's one addition to FeatureNet: its output length is not known until the
// module has run, so the caller runs it once on real views before anything is written.
#pragma once
#include <cstdint>

#include "extract/feature_net.h"

namespace vggcache {

class TorchScriptNet : public FeatureNet {
 public:
  // Runs the module on the first view alone and on all n views (n × 3 × size × size), checks each
  // output (one floating-point tensor, batch dimension n) and that both give the same floats per
  // view, then fixes dim() to that length. Throws Error(kBadWeights) naming the file otherwise.
  virtual uint32_t learn_dim(const float* in, int n, int size) = 0;
};

}  // namespace vggcache
