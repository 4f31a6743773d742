// The losses of the head, with PyTorch 1.13's numerics.
//   Two classes: one logit z, p = sigmoid(z), BCELoss with each log clamped at −100:
//     −[y·max(log p, −100) + (1−y)·max(log(1−p), −100)]
//   More classes: C logits, softmax cross-entropy (log-softmax + NLL).
// Both return the mean loss over the batch and write ∂loss/∂logits (already divided by n).
#pragma once
#include <cstdint>

namespace vggcache {

// z, dz: n logits. prob (optional): n probabilities of class 1.
double bce_with_sigmoid(const float* z, const int32_t* labels, int n, float* dz, float* prob);

// z, dz: n × c logits. prob (optional): n × c softmax probabilities.
double softmax_cross_entropy(const float* z, const int32_t* labels, int n, int c, float* dz,
                             float* prob);

// Probabilities → loss, for evaluation where probabilities of several views were averaged.
// prob: n × classes (classes = 2 gives the BCE above; otherwise −max(log p_y, −100)).
double loss_from_probs(const float* prob, const int32_t* labels, int n, int classes);

// Per-class probabilities (n × classes) from the logits (n × outputs): sigmoid for one output
// (classes 2: [1 − p, p]), softmax otherwise.
void probs_from_logits(const float* z, int n, int outputs, float* prob);

}  // namespace vggcache
