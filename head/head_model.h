// The head: Linear(dim, hidden) → ReLU → Dropout(p) → Linear(hidden, outputs), with a sigmoid +
// BCE for two classes (outputs = 1, the seed's head) and softmax cross-entropy otherwise.
// hidden = 0 is the linear probe, one Linear(dim, outputs) and the same output layer
// (multinomial logistic regression): its weight and bias are w1 and b1, and w2, b2 are empty.
// Weights are stored as nn.Linear stores them (weight: out × in, row-major), so they can be
// exchanged with PyTorch as is.
#pragma once
#include <cstdint>
#include <vector>

namespace vggcache {

struct HeadShape {
  int dim = 0;       // input features (25088 for VGG16's pooled features)
  int hidden = 256;  // hidden units; 0: the linear probe (no hidden layer)
  int classes = 2;   // 2: one sigmoid output; more: one softmax output per class
  int outputs() const { return classes == 2 ? 1 : classes; }
  bool probe() const { return hidden == 0; }
  // Rows of the first Linear (w1: rows1 × dim): the hidden units, or the outputs of a probe.
  int rows1() const { return probe() ? outputs() : hidden; }
};

struct HeadWeights {
  HeadShape shape;
  std::vector<float> w1;  // rows1 × dim (hidden × dim; a probe: outputs × dim)
  std::vector<float> b1;  // rows1
  std::vector<float> w2;  // outputs × hidden (empty for a probe)
  std::vector<float> b2;  // outputs (empty for a probe)
};

// nn.Linear's init: weight kaiming_uniform_(a = √5), i.e. U(±1/√fan_in), bias U(±1/√fan_in),
// drawn from our own RNG (reproducible from `seed`, not from torch's generator). A probe's single
// layer is drawn as the first layer is (bound 1/√dim).
HeadWeights init_head(const HeadShape& shape, uint64_t seed);

// Eval mode (no dropout): per-class probabilities prob (n × classes) of x (n × dim).
void head_predict(const HeadWeights& w, const float* x, int n, float* prob);

// Class with the highest probability (ties → lowest index, as argmax; for two classes p > 0.5).
int predicted_class(const float* prob, int classes);

}  // namespace vggcache
