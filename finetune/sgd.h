// SGD with momentum exactly as torch.optim.SGD (PyTorch 1.13; dampening 0, nesterov off):
//   g ← g + wd·p;  b ← g on the first step, else b ← μ·b + g;  p ← p − lr·b
// One fused pass over p, b and g, as head/adam.h does for Adam.
//
// Thread-safety: no state; concurrent calls on distinct tensors are safe.
#pragma once
#include <cstddef>

namespace vggcache {

struct SgdStep {
  float lr = 0.01f;
  float momentum = 0.9f;
  float weight_decay = 0.0f;
  bool first = false;  // the buffer b is not initialised yet: b ← g (torch's clone of d_p)
};

// The fused update over n contiguous values of p (parameters), b (momentum buffer) and g (the
// gradient, left unchanged).
void sgd_update(float* p, float* b, const float* g, size_t n, const SgdStep& s);

}  // namespace vggcache
