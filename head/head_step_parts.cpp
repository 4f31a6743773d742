#include "head/head_step_parts.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>

#include "head/loss.h"
#include "head/rng.h"

namespace vggcache {

void relu_dropout(const float* h, size_t count, float dropout, uint64_t seed, uint64_t step_key,
                  float* keep, float* a) {
  const float scale = dropout > 0.0f ? 1.0f / (1.0f - dropout) : 1.0f;
  // One hash per value (25,600 at batch 100, hidden 256): split over the threads; each value's
  // mask depends only on its index, so the split does not change it.
  const uint64_t key = hash_key_prefix(seed, static_cast<uint64_t>(Stream::kDropout), step_key);
  tbb::parallel_for(
      tbb::blocked_range<size_t>(0, count, 4096), [&](const tbb::blocked_range<size_t>& r) {
        for (size_t i = r.begin(); i != r.end(); ++i) {
          const bool kept = dropout <= 0.0f || unit_float(hash_key_last(key, i)) >= dropout;
          const float k = (h[i] > 0.0f && kept) ? scale : 0.0f;
          keep[i] = k;
          a[i] = h[i] * k;
        }
      });
}

LossAndCorrect loss_and_correct(const float* z, const int32_t* labels, int n, int outputs,
                                float* dz, const float* class_weight) {
  LossAndCorrect r;
  if (outputs == 1) {
    r.loss = bce_with_sigmoid(z, labels, n, dz, nullptr, class_weight);
    for (int i = 0; i < n; ++i) r.correct += ((z[i] > 0.0f ? 1 : 0) == labels[i]);
  } else {
    r.loss = softmax_cross_entropy(z, labels, n, outputs, dz, nullptr, class_weight);
    for (int i = 0; i < n; ++i) {
      const float* zi = z + static_cast<size_t>(i) * outputs;
      r.correct += (std::max_element(zi, zi + outputs) - zi) == labels[i];
    }
  }
  return r;
}

}  // namespace vggcache
