#include "finetune/sgd.h"

#include "head/simd.h"

namespace vggcache {

VGGCACHE_SIMD_CLONES
void sgd_update(float* __restrict p, float* __restrict b, const float* __restrict g, size_t n,
                const SgdStep& s) {
  const float lr = s.lr, mu = s.momentum, wd = s.weight_decay;
  // torch skips the weight-decay term when it is 0; adding wd·p = +0 would change nothing but -0.
  if (s.first) {
#pragma omp simd
    for (size_t i = 0; i < n; ++i) {
      const float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
      b[i] = gi;
      p[i] -= lr * gi;
    }
  } else {
#pragma omp simd
    for (size_t i = 0; i < n; ++i) {
      const float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
      const float bi = b[i] * mu + gi;
      b[i] = bi;
      p[i] -= lr * bi;
    }
  }
}

}  // namespace vggcache
