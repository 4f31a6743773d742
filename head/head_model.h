// The head: Linear(dim, hidden) → ReLU → Dropout(p) → Linear(hidden, outputs), with a sigmoid +
// BCE for two classes (outputs = 1, the seed's head) and softmax cross-entropy otherwise.
// Weights are stored as nn.Linear stores them (weight: out × in, row-major), so they can be
// exchanged with PyTorch as is.
#pragma once
#include <cstdint>
#include <vector>

namespace vggcache {

struct HeadShape {
  int dim = 0;       // input features (25088 for VGG16's pooled features)
  int hidden = 256;  // hidden units
  int classes = 2;   // 2: one sigmoid output; more: one softmax output per class
  int outputs() const { return classes == 2 ? 1 : classes; }
};

struct HeadWeights {
  HeadShape shape;
  std::vector<float> w1;  // hidden × dim
  std::vector<float> b1;  // hidden
  std::vector<float> w2;  // outputs × hidden
  std::vector<float> b2;  // outputs
};

// nn.Linear's init: weight kaiming_uniform_(a = √5), i.e. U(±1/√fan_in), bias U(±1/√fan_in),
// drawn from our own RNG (reproducible from `seed`, not from torch's generator).
HeadWeights init_head(const HeadShape& shape, uint64_t seed);

// Eval mode (no dropout): per-class probabilities prob (n × classes) of x (n × dim).
void head_predict(const HeadWeights& w, const float* x, int n, float* prob);

// Class with the highest probability (ties → lowest index, as argmax; for two classes p > 0.5).
int predicted_class(const float* prob, int classes);

}  // namespace vggcache
