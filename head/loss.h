// The losses of the head, with PyTorch 1.13's numerics.
//   Two classes: one logit z, p = sigmoid(z), BCELoss with each log clamped at −100:
//     −[y·max(log p, −100) + (1−y)·max(log(1−p), −100)]
//   More classes: C logits, softmax cross-entropy (log-softmax + NLL).
// Both return the mean loss over the batch and write ∂loss/∂logits (already divided by n).
// class_weight (optional, one per class, indexed by label) weights each sample's loss by its
// class's weight, still divided by n (Σ w_{y_i}·l_i / n, BCELoss(weight=w[y]) with mean reduction;
// not CrossEntropyLoss(weight)'s Σ w_{y_i}·l_i / Σ w_{y_i}): with "balanced" weights the mean
// weight over the training set is 1, so the loss and step sizes keep their unweighted scale.
#pragma once
#include <cstdint>

namespace vggcache {

// z, dz: n logits. prob (optional): n probabilities of class 1.
double bce_with_sigmoid(const float* z, const int32_t* labels, int n, float* dz, float* prob,
                        const float* class_weight = nullptr);

// z, dz: n × c logits. prob (optional): n × c softmax probabilities.
double softmax_cross_entropy(const float* z, const int32_t* labels, int n, int c, float* dz,
                             float* prob, const float* class_weight = nullptr);

// Probabilities → loss, for evaluation where probabilities of several views were averaged.
// prob: n × classes (classes = 2 gives the BCE above; otherwise −max(log p_y, −100)).
double loss_from_probs(const float* prob, const int32_t* labels, int n, int classes);

// Per-class probabilities (n × classes) from the logits (n × outputs): sigmoid for one output
// (classes 2: [1 − p, p]), softmax otherwise.
void probs_from_logits(const float* z, int n, int outputs, float* prob);

}  // namespace vggcache
