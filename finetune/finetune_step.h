// One training step of VGG16's block 5 and the head together, from cached pool4 maps:
//   block 5 forward → head forward (training mode) → loss → head backward, including ∂loss/∂(head
//   input) → block 5 backward → the optimizer's update of all ten tensors,
// as PyTorch does it for nn.Sequential(block 5, head) with two parameter groups: block 5's six
// tensors at lr_block5, the head's four at lr. The optimizer is torch.optim.Adam (head/adam.h) or
// torch.optim.SGD with momentum (finetune/sgd.h); weight decay applies to both groups.
//
// Shapes: x is n × 512 × h × w (pool4 maps, see block5.h), labels n class indices; block 5's
// output is n × 25088, so the head's dim must be 25088 (kBlock5OutputDim).
// Ownership: the FineTuner owns its Block5, its HeadWeights, the optimizer state (two moments per
// tensor for Adam, one buffer for SGD: 2× or 1× the 13.5 M parameters at hidden 256) and the
// activations of the last batch (Block5Activations, ~9 MB for 64 crops at 64 px).
// Thread-safety: none; one thread drives a FineTuner. Inside, block 5 and the head's first layer
// run TBB tasks over fixed blocks, so a step's result is the same for any thread count.
// Errors: a head of another dim or with missing weights throws Error(kMismatch); an unset block 5
// layer, a bad config (learning rate ≤ 0, dropout outside [0, 1), momentum or a β outside
// [0, 1), eps ≤ 0, weight decay < 0) or a label outside the classes throws
// Error(kInvalidArgument); bad input shapes throw as Block5::forward() does. A throwing step()
// leaves the weights and the optimizer state as they were. Class weights other than one ≥ 0 per
// class throw Error(kInvalidArgument) from the constructor.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "finetune/block5.h"
#include "head/head_model.h"

namespace vggcache {

struct AdamStep;  // head/adam.h
struct SgdStep;   // finetune/sgd.h

enum class FineTuneOptimizer { kAdam, kSgd };

struct FineTuneConfig {
  FineTuneOptimizer optimizer = FineTuneOptimizer::kAdam;
  double lr = 1e-3;                               // the head's learning rate
  double lr_block5 = 1e-4;                        // block 5's (a second torch param group)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // Adam
  double momentum = 0.9;                          // SGD
  double weight_decay = 0.0;  // L2 added to the gradient, both groups (torch's weight_decay)
  double dropout = 0.0;       // the head's Dropout(p)
  // Train the head only: block 5 still runs forward, but gets no gradient and never changes.
  bool freeze_block5 = false;
  uint64_t seed = 0;  // dropout masks: as HeadOptimizer's, they depend on (seed, step_key, index)
  // One weight per class (empty: all 1): each sample's loss is weighed by its class's weight, as
  // the pool5 trainer's --class-weight does (head/head_step_parts.h: loss_and_correct).
  std::vector<float> class_weight;
  // Block 5's convolutions while it trains (finetune/block5.h): Winograd by default where the
  // maps allow it. A frozen block 5 runs the direct one, so its outputs are the floats that
  // evaluation and predict compute.
  Block5Conv block5_conv = Block5Conv::kAuto;
  // The head's first layer on the pool5 map with the 7 × 7 average pool folded into its weights,
  // where the map has fewer than 49 cells (2048 inputs instead of 25088 at 64 px): the same
  // function, summed in another order. false: on the 25088 pooled features, as torch computes.
  bool compact_head = true;
  // With the compact head and no weight decay, the pooled features that average the same pool5
  // cells (9 groups of the 49 outputs at 64 px) get the same W1 gradient at every step, so their
  // optimizer state is the same too: one state per group gives the same updates as one per
  // weight, with 5.4× less state to keep and update (77 MB less at hidden 256). false keeps one
  // per weight, to test that the two agree.
  bool group_w1_state = true;
};

struct FineTuneStats {
  double loss = 0.0;  // mean loss of the batch, before the update (as PyTorch reports it)
  int correct = 0;    // predictions equal to the label (training mode: dropout on)
};

class FineTuner {
 public:
  FineTuner(Block5 block5, HeadWeights head, const FineTuneConfig& config);
  // The optimizer addresses the tensors it owns by pointer.
  FineTuner(const FineTuner&) = delete;
  FineTuner& operator=(const FineTuner&) = delete;

  // One step on x (n × 512 × h × w) with labels (n). `step_key` names the step for the dropout
  // mask; callers pass the global step index.
  FineTuneStats step(const std::vector<float>& x, int n, int h, int w, const int32_t* labels,
                     uint64_t step_key);

  const Block5& block5() const { return block5_; }
  const HeadWeights& head() const { return head_; }
  int64_t steps_taken() const { return t_; }

 private:
  // One of the ten tensors: where it lives, its group's learning rate and its optimizer state
  // (Adam: s1 = m, s2 = v; SGD: s1 = the momentum buffer).
  struct Param {
    float* p = nullptr;
    size_t size = 0;
    bool block5 = false;
    std::vector<float> grad, s1, s2;
  };
  // The head on feat (n × d) with first-layer weights w1 (hidden × d): the loss, every head
  // gradient but W1's, which goes to g_w1 (hidden × d), and, unless block 5 is frozen, ∂feat
  // into d_feat_.
  void head_forward_backward(const float* feat, int n, int d, const float* w1, float* g_w1,
                             const int32_t* labels, uint64_t step_key, FineTuneStats* stats);
  // The compact first layer for pool5 maps of ph × pw < 49 cells: W1 with the adaptive average
  // pool folded in, w1c_ (hidden × 512·ph·pw), and ∂W1 expanded back from g_w1c_.
  void fold_w1(int ph, int pw);
  void expand_w1_grad(int ph, int pw);
  // Whether this step keeps W1's optimizer state by groups (W1Groups); sets the groups up on the
  // first step, and expands them into per-weight state when a step cannot use them.
  bool w1_grouped(bool compact, int ph, int pw);
  void ensure_w1_per_weight();
  void group_w1_grad();
  void update(bool w1_grouped);
  // W1's grouped update, one hidden row per task, refolding the row into w1c_ on the way.
  void update_w1_grouped(const AdamStep& adam, const SgdStep& sgd);

  Block5 block5_;
  HeadWeights head_;
  FineTuneConfig config_;
  int64_t t_ = 0;
  std::array<Param, 10>
      params_;  // block 5's w1, b1, w2, b2, w3, b3, then the head's w1, b1, w2, b2
  Block5Activations act_;
  // Workspaces reused across steps: hidden (n × hidden) pre-activation, keep factors and
  // activations; logits and their gradient (n × outputs); ∂loss/∂hidden; ∂loss/∂(block 5 output).
  std::vector<float> h_, keep_, a_, z_, dz_, dh_, d_feat_;
  std::vector<float> w1c_, g_w1c_;  // the compact first layer and its gradient
  // Per cell of the pool5 plane, the 7 × 7 outputs that average it and 1 / their window sizes.
  std::vector<std::vector<std::pair<int, float>>> cell_outputs_;
  int cells_ph_ = 0, cells_pw_ = 0;
  bool w1c_current_ = false;  // w1c_ folds the W1 of now (the grouped update refolds it)
  // W1's optimizer state by groups of pooled features with equal gradients (group_w1_state):
  // the group of each of the 49 outputs, and per (hidden, channel, group), hidden × 512 × count,
  // the gradient and the state (Adam's two moments, SGD's buffer).
  struct W1Groups {
    bool active = false;
    int ph = 0, pw = 0, count = 0;
    std::vector<int> of_output;           // 49
    std::vector<std::vector<int>> cells;  // count: the pool5 cells each group's outputs average
    std::vector<float> grad, s1, s2;
  } w1g_;
};

}  // namespace vggcache
