// Training step on compact vectors (train_head/compact_layout.h): the first layer without the
// 25088-d vectors, same results as the full-width HeadOptimizer up to float rounding.
//
// Forward: W·x = (W·E)·m, so the GEMMs use Wc = W·E (hidden × C·K): the columns of the cells that
// share a window, summed. Backward: ∂loss/∂W = G·Eᵀ with G = dhᵀ·m (hidden × C·K): every cell of
// window k receives the window's whole gradient column.
//
// Weight decay 0 (the seed's setting): columns of W that share a window receive identical
// gradients at every step, so their Adam moments and updates are identical too. One Adam state
// and one accumulated update per distinct column suffice: W = W0 + U·Eᵀ, and then
// Wc = W0·E + U·diag(cells per window). GEMMs and Adam both work on C·K columns.
//
// Weight decay > 0: the decay term differs per column (W0 differs), so the columns diverge; Adam
// stays full width (W and its moments, hidden × C·49) but the GEMMs still use Wc, summed from the
// updated W in the same pass as the update.
//
// State is kept in blocks of whole channels (block b: channels [b·64, b·64 + 64), its columns
// contiguous per block), so each block's gradient stays in cache between its GEMM and its update,
// and the work splits into a fixed set of blocks: results do not depend on --threads.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "train_head/compact_layout.h"
#include "train_head/feature_source.h"
#include "train_head/train_step.h"

namespace vggcache {

class CompactHeadOptimizer : public HeadOptimizer {
 public:
  // init: the full-width head (W1 hidden × C·49, as init_head makes it for dim 25088).
  CompactHeadOptimizer(HeadWeights init, const AdamConfig& adam, double dropout, uint64_t seed,
                       const CompactLayout& layout);

  // step() takes compact vectors x (n × C·K); weights() gives the full-width head (W0 + U·Eᵀ, or
  // the full W with weight decay); compact_weights() the head over compact vectors (W1 = Wc).
  const HeadWeights* compact_weights() override;
  const CompactLayout& layout() const { return layout_; }
  bool shared_columns() const { return !decay_; }  // true: one Adam state per distinct column

 protected:
  void forward_first_layer(const float* x, int n) override;
  void backward_first_layer_and_adam(const float* x, int n, const AdamStep& s) override;
  void refresh_w1() override;

 private:
  // Channels [c0, c1) of block b, and the offsets of its compact and full storage.
  struct Block {
    int c0, c1;
    size_t compact_off, full_off;  // hidden × (c1 − c0)·K  and  hidden × (c1 − c0)·49
  };
  void update_shared(const Block& blk, const float* g, const AdamStep& s);
  void update_full(const Block& blk, const float* g, const AdamStep& s);

  CompactLayout layout_;
  bool decay_;
  std::vector<Block> blocks_;
  std::vector<float> cells_;  // per compact column of a whole block: cells in its window
  std::vector<float> wc_;     // W·E, blocked (hidden × C·K)
  // Weight decay 0: W0 (hidden × C·49, nn.Linear layout), W0·E, and U with its moments (blocked).
  std::vector<float> w0_, w0c_, u_, m_u_, v_u_;
  // Weight decay > 0: W and its moments, blocked (hidden × C·49).
  std::vector<float> w_full_, m_full_, v_full_;
  std::vector<float> partial_c_;  // blocks × n × hidden
  HeadWeights compact_;           // the compact head, refreshed by compact_weights()
  bool compact_stale_ = true;
  // Per thread: a block's gradient (hidden × wk), one gradient row expanded to its cells (wf).
  tbb::enumerable_thread_specific<std::vector<float>> grad_scratch_, row_scratch_;
};

// The optimizer for the vectors a training source gives: compact when it has a compact layout
// (`layout` non-null), full width otherwise.
std::unique_ptr<HeadOptimizer> make_head_optimizer(HeadWeights init, const AdamConfig& adam,
                                                   double dropout, uint64_t seed,
                                                   const CompactLayout* layout);

// The head to evaluate `src`'s vectors with: the compact head when `src` gives compact vectors
// of the optimizer's layout, else the full-width one.
const HeadWeights& weights_for_source(HeadOptimizer& opt, const FeatureSource& src);

// The full-width standardiser (dim C·49) of a compact one (dim C·K): cells sharing a window have
// identical values, hence identical statistics.
Standardizer expand_standardizer(const Standardizer& s, const CompactLayout& layout);
// `s` as head.bin stores it (over the 25088-d vectors), whatever vectors `train` gives.
Standardizer full_width_standardizer(const Standardizer& s, const FeatureSource& train);

// Whether training can run compact: both caches are prepool-f32 with one map shape (the test
// vectors are then compact too, and one standardiser serves both).
bool compact_caches(const std::string& train_dir, const std::string& test_dir);

}  // namespace vggcache
