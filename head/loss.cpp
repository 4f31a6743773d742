#include "head/loss.h"

#include <algorithm>
#include <cmath>

namespace vggcache {

namespace {

// torch.sigmoid in float.
inline float sigmoid(float z) {
  return 1.0f / (1.0f + std::exp(-z));
}

// BCELoss for one probability, log clamped at −100 as torch does (so p = 0 or 1 stays finite).
inline double bce(float p, int32_t y) {
  double lp = std::max(std::log(static_cast<double>(p)), -100.0);
  double l1p = std::max(std::log(1.0 - static_cast<double>(p)), -100.0);
  return y == 1 ? -lp : -l1p;
}

}  // namespace

double bce_with_sigmoid(const float* z, const int32_t* labels, int n, float* dz, float* prob,
                        const float* class_weight) {
  double total = 0.0;
  const float inv_n = 1.0f / static_cast<float>(n);
  for (int i = 0; i < n; ++i) {
    float p = sigmoid(z[i]);
    float y = static_cast<float>(labels[i]);
    // The weight multiplies the unweighted terms, so no weights gives them bit for bit.
    const float w = class_weight ? class_weight[labels[i]] : 1.0f;
    total += class_weight ? w * bce(p, labels[i]) : bce(p, labels[i]);
    // BCELoss backward: (p − y) / max(p(1 − p), 1e-12) / n, then sigmoid backward × p(1 − p).
    // Kept as two factors like torch, so a saturated p gives the same (zero) gradient.
    float s = p * (1.0f - p);
    float grad_p = (p - y) / std::max(s, 1e-12f) * inv_n;
    if (class_weight) grad_p *= w;
    dz[i] = grad_p * s;
    if (prob) prob[i] = p;
  }
  return total / n;
}

double softmax_cross_entropy(const float* z, const int32_t* labels, int n, int c, float* dz,
                             float* prob, const float* class_weight) {
  double total = 0.0;
  const float inv_n = 1.0f / static_cast<float>(n);
  for (int i = 0; i < n; ++i) {
    const float* zi = z + static_cast<size_t>(i) * c;
    float* di = dz + static_cast<size_t>(i) * c;
    float mx = *std::max_element(zi, zi + c);
    double sum = 0.0;
    for (int k = 0; k < c; ++k) sum += std::exp(static_cast<double>(zi[k] - mx));
    double log_sum = std::log(sum);
    const float w = class_weight ? class_weight[labels[i]] : 1.0f;
    const double li = -(static_cast<double>(zi[labels[i]] - mx) - log_sum);
    total += class_weight ? w * li : li;
    for (int k = 0; k < c; ++k) {
      float pk = static_cast<float>(std::exp(static_cast<double>(zi[k] - mx) - log_sum));
      di[k] = (pk - (k == labels[i] ? 1.0f : 0.0f)) * inv_n;
      if (class_weight) di[k] *= w;
      if (prob) prob[static_cast<size_t>(i) * c + k] = pk;
    }
  }
  return total / n;
}

double loss_from_probs(const float* prob, const int32_t* labels, int n, int classes) {
  double total = 0.0;
  for (int i = 0; i < n; ++i) {
    const float* pi = prob + static_cast<size_t>(i) * classes;
    if (classes == 2) {
      total += bce(pi[1], labels[i]);
    } else {
      total += -std::max(std::log(static_cast<double>(pi[labels[i]])), -100.0);
    }
  }
  return n > 0 ? total / n : 0.0;
}

void probs_from_logits(const float* z, int n, int outputs, float* prob) {
  if (outputs == 1) {
    for (int i = 0; i < n; ++i) {
      float p = sigmoid(z[i]);
      prob[2 * i] = 1.0f - p;
      prob[2 * i + 1] = p;
    }
    return;
  }
  for (int i = 0; i < n; ++i) {
    const float* zi = z + static_cast<size_t>(i) * outputs;
    float* pi = prob + static_cast<size_t>(i) * outputs;
    float mx = *std::max_element(zi, zi + outputs);
    double sum = 0.0;
    for (int k = 0; k < outputs; ++k) sum += std::exp(static_cast<double>(zi[k] - mx));
    for (int k = 0; k < outputs; ++k)
      pi[k] = static_cast<float>(std::exp(static_cast<double>(zi[k] - mx)) / sum);
  }
}

}  // namespace vggcache
