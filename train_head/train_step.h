// One training step of the head: forward, loss, backward and Adam, on a batch already gathered
// into memory. The expensive parts are the two first-layer GEMMs (x · W1ᵀ forward, δᵀ · x for
// ∂W1) and Adam over W1's hidden × dim values, which is memory-bound.
//
// So W1 and its Adam moments live in a column-blocked layout while training: block b holds
// columns [b·B, b·B + B) of W1 as a contiguous hidden × B matrix. Both GEMMs then split into the
// same blocks (the forward sums the blocks' partial products in block order), and ∂W1 is never
// materialised: each block's gradient (hidden × B, L2-resident) is consumed by one contiguous,
// fused Adam pass right after the GEMM that produced it.
#pragma once
#include <tbb/enumerable_thread_specific.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "head/adam.h"
#include "head/head_model.h"

namespace vggcache {

struct StepStats {
  double loss = 0.0;  // mean loss of the batch (before the update, as PyTorch reports it)
  int correct = 0;    // predictions equal to the label (training mode: dropout on)
};

class HeadOptimizer {
 public:
  HeadOptimizer(HeadWeights init, const AdamConfig& adam, double dropout, uint64_t seed);
  virtual ~HeadOptimizer() = default;

  // One Adam step on x (n × dim) with labels (n). `step_key` names the step for the dropout mask
  // (the mask depends only on seed, step_key and the position in the batch). A probe (hidden 0)
  // has one layer, W1 (outputs × dim) and b1, and no dropout.
  StepStats step(const float* x, const int32_t* labels, int n, uint64_t step_key);

  // The current weights in nn.Linear's layout (unblocks W1 when it changed since the last call).
  const HeadWeights& weights();
  // The weights over the compact vectors step() takes (train_head/compact_step.h), or nullptr
  // when step() takes the dim-float vectors themselves.
  virtual const HeadWeights* compact_weights() { return nullptr; }
  // Keeps a copy of the current weights in the form training holds them (a compact head at
  // weight decay 0 keeps its 4,608 distinct columns at 64 px, not 25,088), so that keeping the
  // weights of every new best epoch costs a copy of the state, not a full-width unblocking.
  void keep();
  // The weights keep() last kept, in nn.Linear's layout, made in the optimizer's own full-width
  // buffer (no new 25 MB allocation per head): the optimizer is spent afterwards, and step(),
  // weights() and keep() throw Error(kInvalidArgument). Also that error without keep().
  HeadWeights take_kept_weights();
  int64_t steps_taken() const { return t_; }
  // Per-class loss weights (indexed by label, head/loss.h); empty (the default): unweighted.
  void set_class_weights(std::vector<float> w) { class_weight_ = std::move(w); }

 protected:
  // For a first layer of another form (train_head/compact_step.h): without `dense_w1` the blocked
  // W1 and its moments are not allocated, and the three hooks below must be overridden.
  HeadOptimizer(HeadWeights init, const AdamConfig& adam, double dropout, uint64_t seed,
                bool dense_w1);
  // h_ (n × hidden) = x · W1ᵀ + b1.
  virtual void forward_first_layer(const float* x, int n);
  // ∂W1 from dh_ (n × hidden, ∂loss/∂h) and x, and W1's Adam update; sets w1_stale_.
  virtual void backward_first_layer_and_adam(const float* x, int n, const AdamStep& s);
  // What W1 is made from while training (the blocked W1 here) and how: writes W1 in nn.Linear's
  // layout (hidden × dim) from `state`, a copy of w1_state() (refresh_w1, take_kept_weights).
  virtual const std::vector<float>& w1_state() const { return w1_blocked_; }
  virtual void w1_from_state(const float* state, float* w1) const;
  // W1 made from `state` (a kept copy of w1_state()) in a buffer the optimizer gives up; by
  // default w_.w1's.
  virtual std::vector<float> release_w1(const float* state);
  // Writes the current W1 into w_.w1 (allocating it if a subclass released it).
  void refresh_w1();
  void check_not_spent(const char* what) const;
  // step() of a probe (hidden 0): the first layer gives the logits; `dropout` does not apply.
  StepStats probe_step(const float* x, const int32_t* labels, int n);

  HeadWeights w_;  // b1, w2, b2 live here; w_.w1 is refreshed from w1_blocked_ by weights()
  bool w1_stale_ = false;
  AdamConfig adam_;
  float dropout_;
  uint64_t seed_;
  int64_t t_ = 0;
  int blocks_ = 0;
  std::vector<float> w1_blocked_, m_w1_, v_w1_;  // blocked layout (see above)
  std::vector<float> m_b1_, v_b1_, m_w2_, v_w2_, m_b2_, v_b2_;
  // Workspaces reused across steps (n × hidden unless noted).
  std::vector<float> partial_;  // blocks × n × hidden
  std::vector<float> h_, a_, keep_, z_ /* n × outputs */, dz_ /* n × outputs */, dh_;
  std::vector<float> g_b1_, g_w2_, g_b2_;
  // keep(): a copy of w1_state() and of the other layers.
  std::vector<float> kept_w1_state_, kept_b1_, kept_w2_, kept_b2_;
  std::vector<float> class_weight_;  // empty: every sample weighs 1
  bool has_kept_ = false;
  bool spent_ = false;  // take_kept_weights() gave the buffers away
  tbb::enumerable_thread_specific<std::vector<float>> grad_blocks_;  // hidden × block, per thread
};

}  // namespace vggcache
