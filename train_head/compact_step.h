// Training step on compact vectors (head/compact_layout.h): the first layer without the
// 25088-d vectors, same results as the full-width HeadOptimizer up to float rounding.
// "hidden" below is the first layer's rows: the hidden units, or a probe's outputs (hidden 0).
//
// Forward: W·x = (W·E)·m = (W·E·A)·z, so the GEMMs use Wc = W·E (hidden × C·K) against the window
// means m, or Wz = Wc·A (hidden × C·h·w) against the map z itself when the layout's input is the
// map (fewer columns still: 2,048 instead of 4,608 at 64 px). Backward: ∂loss/∂W = Gc·Eᵀ with
// Gc = dhᵀ·m = (dhᵀ·z)·Aᵀ (hidden × C·K): every cell of window k receives the window's gradient.
//
// Weight decay 0 (the seed's setting): columns of W that share a window receive identical
// gradients at every step, so their Adam moments and updates are identical too. One Adam state
// and one accumulated update per distinct column suffice: W = W0 + U·Eᵀ, and then
// Wc = W0·E + U·diag(cells per window). Adam works on C·K columns.
//
// Weight decay > 0: the decay term differs per column (W0 differs), so the columns diverge; Adam
// stays full width (W and its moments, hidden × C·49) but the GEMMs still use Wc (or Wz), summed
// from the updated W while it is in cache. That pass is memory-bound: 24 bytes of state per
// weight read and written per step (154 MB at hidden 256), the floor of this path.
//
// Storage is transposed (one contiguous row of `hidden` floats per input column: the column maps
// E, A, Aᵀ then add whole rows and vectorise) and blocked by whole channels (block b: channels
// [b·64, b·64 + 64), its rows contiguous), so each block's gradient stays in cache between its
// GEMM and its update, and the work splits into a fixed set of blocks: results do not depend on
// --threads.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "head/compact_layout.h"
#include "head/feature_source.h"
#include "train_head/train_step.h"

namespace vggcache {

class CompactHeadOptimizer : public HeadOptimizer {
 public:
  // init: the full-width head (W1 hidden × C·49, as init_head makes it for dim 25088).
  CompactHeadOptimizer(HeadWeights init, const AdamConfig& adam, double dropout, uint64_t seed,
                       const CompactLayout& layout);

  // step() takes compact vectors x (n × layout.input_dim()); weights() gives the full-width head
  // (W0 + U·Eᵀ, or the full W with weight decay); compact_weights() the head over the compact
  // vectors (W1 = Wc, or Wz for map input).
  const HeadWeights* compact_weights() override;
  const CompactLayout& layout() const { return layout_; }
  bool shared_columns() const { return !decay_; }  // true: one Adam state per distinct column

 protected:
  void forward_first_layer(const float* x, int n) override;
  void backward_first_layer_and_adam(const float* x, int n, const AdamStep& s) override;
  // U (C·K × hidden) at weight decay 0, else the full W (C·49 × hidden), both transposed.
  const std::vector<float>& w1_state() const override { return decay_ ? w_full_ : u_; }
  void w1_from_state(const float* state, float* w1) const override;
  // Weight decay 0: W0 + U·Eᵀ made in W0's own buffer.
  std::vector<float> release_w1(const float* state) override;

 private:
  // Channels [c0, c1) of block b and where its rows start in each store (c0 · rows per channel
  // · hidden: the blocks before it are whole).
  struct Block {
    int c0, c1;
    size_t window_off, map_off, full_off;  // c0·K·hidden, c0·h·w·hidden, c0·49·hidden
  };
  void update_shared(const Block& blk, const float* g, const AdamStep& s);
  void update_full(const Block& blk, const float* g, const AdamStep& s);
  float* wc_rows(const Block& blk, int c);
  void finish_channel(const Block& blk, int c, const float* wc_rows);
  // The GEMMs' weights (Wc or Wz) and a block's offset in them.
  float* input_weights(const Block& blk);

  CompactLayout layout_;
  bool decay_, map_input_;
  std::vector<Block> blocks_;
  std::vector<float> cells_;  // per window row of a whole block (c·K + k): cells of window k
  // Transposed and blocked (see above).
  std::vector<float> wc_;  // W·E, C·K × hidden (window-mean input; map input: freed after start)
  std::vector<float> wz_;  // map input: W·E·A, C·h·w × hidden
  // Weight decay 0: W0 (nn.Linear's layout, hidden × C·49); W0·E, U and U's moments (C·K × hidden).
  std::vector<float> w0_, w0c_, u_, m_u_, v_u_;
  // Weight decay > 0: W and its moments (C·49 × hidden).
  std::vector<float> w_full_, m_full_, v_full_;
  std::vector<float> partial_c_;  // blocks × n × hidden
  HeadWeights compact_;           // the compact head, refreshed by compact_weights()
  bool compact_stale_ = true;
  // Per thread: a block's gradient over its input columns, and (map input) over its windows.
  // Per thread (map input): one channel's Wc rows.
  tbb::enumerable_thread_specific<std::vector<float>> grad_scratch_, window_scratch_, wc_scratch_;
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

// The vectors to train on from two caches: the pooled vectors unless both are prepool-f32 with one
// map shape and `full_width` is off (the test vectors are then compact too, and one standardiser
// serves both). Then the map itself when it has fewer values than the window means and nothing
// is standardised (standardisation is per pooled value, i.e. per window mean), else the means.
VectorForm training_vectors(const std::string& train_dir, const std::string& test_dir,
                            bool full_width, bool standardize);
// What the compact first layer runs on, for logs: "4608 distinct columns of 25088, GEMMs on the
// 2048-value map" (empty for nullptr).
std::string compact_summary(const CompactLayout* layout);

}  // namespace vggcache
