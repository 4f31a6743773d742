// Adam exactly as torch.optim.Adam (PyTorch 1.13, amsgrad off): weight decay is L2 added to the
// gradient, eps is added after the bias correction of the second moment.
//   g ← g + wd·p;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + eps)
// One pass reads p, m, v, g once and writes p, m, v once: the update is memory-bound, so fusing
// it (instead of a pass per formula line, as PyTorch's single-tensor path does) is what counts.
#pragma once
#include <cstddef>
#include <cstdint>

namespace vggcache {

struct AdamConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

// The per-step scalars, computed once per step (t counts from 1).
struct AdamStep {
  float beta1, beta2, one_minus_beta1, one_minus_beta2;
  float step_size;  // lr / (1 − β1ᵗ)
  float bc2_sqrt;   // √(1 − β2ᵗ)
  float eps, weight_decay;
};
AdamStep adam_step(const AdamConfig& c, int64_t t);

// The fused update over n contiguous values.
void adam_update(float* p, float* m, float* v, const float* g, size_t n, const AdamStep& s);

// Adam state for one parameter tensor: first and second moments, zero-initialised as torch does.
struct AdamSlot {
  float* m = nullptr;
  float* v = nullptr;
};

}  // namespace vggcache
