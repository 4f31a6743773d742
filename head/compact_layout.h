// The compact form of prepool-f32 features, for training without the 25088-d vectors.
//
// Below 224 px VGG16's last map z (C × h × w) is smaller than 7×7, and the pooled vector is
// x = P·z: each of the 49 cells of channel c is the mean of one pooling window of z, and many
// cells share a window (64 px: 9 distinct windows per channel, 4,608 distinct values among 25,088).
// The compact vector m holds the distinct window means, m[c·K + k] for window k of channel c
// (K windows per channel), computed exactly as the cache reader's expansion computes them, so
//   x = E·m  bit for bit,  E: the 0/1 expansion x[c·49 + cell] = m[c·K + window(cell)].
// Hence W·x = (W·E)·m: the first layer's GEMMs run on C·K columns instead of C·49.
//
// The window means are themselves linear in the map, m = A·z (A: each window's values ÷ kh ÷ kw),
// so W·x = (W·E·A)·z: when the map has fewer values per channel than there are windows (h·w < K:
// 4 < 9 at 64 px, 9 < 25 at 100 px, 16 < 49 at 150 px) the GEMMs can run on the map itself. The
// layout records which of the two the training vectors are (input()).
#pragma once
#include <vector>

#include "common/cache_meta.h"
#include "common/prepool.h"

namespace vggcache {

// The vectors a compact training step takes: the C·K window means, or the C·h·w map itself.
enum class CompactInput { kWindowMeans, kMap };

class CompactLayout {
 public:
  // From a prepool-f32 cache's metadata; throws Error(kInvalidArgument) for other codecs.
  static CompactLayout from_meta(const CacheMeta& m);
  CompactLayout(int channels, int h, int w);

  int channels() const { return channels_; }
  int h() const { return h_; }
  int w() const { return w_; }
  int windows() const { return static_cast<int>(pool_.windows.size()); }  // K
  int dim() const { return channels_ * windows(); }                       // C·K
  int full_dim() const { return channels_ * kCells; }                     // C·49
  int payload_floats() const { return channels_ * h_ * w_; }              // C·h·w
  // What the training vectors are (default: window means), and their columns per channel and
  // in all (K and C·K, or h·w and C·h·w).
  CompactInput input() const { return input_; }
  CompactLayout with_input(CompactInput input) const;
  int input_per_channel() const { return input_ == CompactInput::kMap ? h_ * w_ : windows(); }
  int input_dim() const { return channels_ * input_per_channel(); }
  // Window k of each channel covers cells(k) of the 49 cells (the column multiplicity in E).
  int cells(int k) const { return cells_[k]; }
  // Window of cell i·7 + j.
  int cell_window(int cell) const { return pool_.cell_window[cell]; }
  bool operator==(const CompactLayout& o) const {
    return channels_ == o.channels_ && h_ == o.h_ && w_ == o.w_ && input_ == o.input_;
  }
  bool operator!=(const CompactLayout& o) const { return !(*this == o); }

  // m (C·K) from z (C × h × w): each window's values summed row by row, then divided by its
  // height and then its width, in float, as expand_prepool() (hence adaptive_avg_pool2d) does.
  void window_means(const float* z, float* m) const;

  // The column maps of a rows × (49·n) matrix W whose columns are those of `n` consecutive
  // channels (nn.Linear's layout, or one block of it), row strides ld_full / ld_compact:
  // out (rows × K·n) = W·E, the columns of the cells sharing a window summed in cell order.
  void sum_columns(const float* full, int ld_full, int rows, int n, float* out,
                   int ld_compact) const;
  // out (rows × 49·n) = base + U·Eᵀ for U (rows × K·n): every cell gets its window's column
  // (base may be nullptr for 0, or equal to out: each element is read before it is written).
  void expand_columns(const float* compact, int ld_compact, int rows, int n, const float* base,
                      float* out, int ld_full) const;

  // The same maps on transposed blocks, as the compact trainer stores its weights: one
  // contiguous row of `width` floats (one per hidden unit) per column of the matrices above,
  // rows indexed c·49 + cell (cells), c·K + k (windows) or c·h·w + p (map positions) over the
  // `n` channels of a block. Each output row is a sum of whole input rows, so the loops run over
  // `width` contiguous floats and vectorise.
  //   sum_rows:    out (n·K × width), window k = Σ of its cells' rows, in cell order  (Eᵀ)
  //   window_rows: out (n·K × width), window k = (Σ of its map rows) ÷ kh ÷ kw        (A)
  //   map_rows:    out (n·h·w × width), position p = Σ over the windows k holding p of
  //                window row k ÷ kh ÷ kw, in window order                           (Aᵀ)
  void sum_rows(const float* cells, int n, int width, float* out) const;
  void window_rows(const float* map, int n, int width, float* out) const;
  void map_rows(const float* windows, int n, int width, float* out) const;

  static constexpr int kCells = 49;  // AdaptiveAvgPool2d(7, 7)

 private:
  int channels_, h_, w_;
  CompactInput input_ = CompactInput::kWindowMeans;
  PoolWindows pool_;
  std::vector<int> cells_;  // K
  // How window_means() computes window k: the values at offsets_[first, last) of a channel,
  // summed, then divided by kh and kw; when both are powers of two, multiplied by `scale`, the
  // exact inverse of kh·kw (0 otherwise), which gives the same float for every normal result.
  struct Mean {
    int first, last;
    float kh, kw, scale;
  };
  std::vector<Mean> means_;  // K
  std::vector<int> offsets_;
  // The cells of window k are window_cells_[window_cells_first_[k] .. window_cells_first_[k+1]).
  std::vector<int> window_cells_, window_cells_first_;
};

}  // namespace vggcache
