#include "head/adam.h"

#include <cmath>

#include "head/simd.h"

namespace vggcache {

AdamStep adam_step(const AdamConfig& c, int64_t t) {
  AdamStep s;
  s.beta1 = static_cast<float>(c.beta1);
  s.beta2 = static_cast<float>(c.beta2);
  s.one_minus_beta1 = static_cast<float>(1.0 - c.beta1);
  s.one_minus_beta2 = static_cast<float>(1.0 - c.beta2);
  // PyTorch computes these in Python doubles, then uses them as float scalars.
  double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
  double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t));
  s.step_size = static_cast<float>(c.lr / bc1);
  s.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  s.eps = static_cast<float>(c.eps);
  s.weight_decay = static_cast<float>(c.weight_decay);
  return s;
}

VGGCACHE_SIMD_CLONES
void adam_update(float* __restrict p, float* __restrict m, float* __restrict v,
                 const float* __restrict g, size_t n, const AdamStep& s) {
  const float b1 = s.beta1, b2 = s.beta2, c1 = s.one_minus_beta1, c2 = s.one_minus_beta2;
  const float inv_bc2 = 1.0f / s.bc2_sqrt, step = s.step_size, eps = s.eps, wd = s.weight_decay;
  // Same operation order as torch's single-tensor Adam so results agree to float rounding.
  // (Division by bc2_sqrt is replaced by a multiplication: a 1-ulp difference, well inside 1e-4.)
#pragma omp simd
  for (size_t i = 0; i < n; ++i) {
    float gi = g[i] + wd * p[i];
    float mi = m[i] * b1 + c1 * gi;
    float vi = v[i] * b2 + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= step * (mi / (std::sqrt(vi) * inv_bc2 + eps));
  }
}

}  // namespace vggcache
