// Pieces of a training step of the head that every trainer of it must compute identically, so
// that train_head's HeadOptimizer and finetune's FineTuner give the same masks and statistics:
// the ReLU + dropout of the hidden layer (its mask drawn from the project's counter-based RNG)
// and the loss with its gradient and the count of correct predictions.
//
// Thread-safety: no state; relu_dropout() runs TBB tasks inside, and its result depends only on
// its arguments (each value's mask on its index), never on the thread count.
#pragma once
#include <cstddef>
#include <cstdint>

namespace vggcache {

// a = dropout(relu(h)) over `count` values (n × hidden), in training mode: keep (the factor the
// backward pass multiplies ∂loss/∂a by) is 0 where the unit is off or dropped and 1/(1 − p)
// where kept. The mask of value i depends only on (seed, step_key, i).
void relu_dropout(const float* h, size_t count, float dropout, uint64_t seed, uint64_t step_key,
                  float* keep, float* a);

struct LossAndCorrect {
  double loss = 0.0;  // mean over the batch
  int correct = 0;    // predictions equal to the label (argmax; for one output z > 0)
};
// The loss of head/loss.h for logits z (n × outputs; outputs 1: sigmoid + BCE, else softmax
// cross-entropy) and ∂loss/∂z into dz (n × outputs, already divided by n); class_weight
// (optional, one per class) weights each sample as head/loss.h describes.
LossAndCorrect loss_and_correct(const float* z, const int32_t* labels, int n, int outputs,
                                float* dz, const float* class_weight = nullptr);

}  // namespace vggcache
