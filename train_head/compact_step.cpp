#include "train_head/compact_step.h"

#include <fmt/format.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <algorithm>

#include "common/error.h"
#include "head/linalg.h"

namespace vggcache {

namespace {

// Channels per block: 8 blocks for VGG16's 512 channels (even work for 1, 2, 4 or 8 threads);
// at 64 px and hidden 256 a block's window gradient is 576 × 256 floats (590 KB), which stays
// in L2 until its update.
constexpr int kBlockChannels = 64;

// out (cols × rows, leading dimension ld_out) = in (rows × cols, ld_in)ᵀ, in tiles that stay in L1.
void transpose(const float* in, int rows, int cols, size_t ld_in, float* out, size_t ld_out) {
  constexpr int kTile = 16;
  for (int r0 = 0; r0 < rows; r0 += kTile)
    for (int c0 = 0; c0 < cols; c0 += kTile) {
      const int r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      for (int r = r0; r < r1; ++r)
        for (int c = c0; c < c1; ++c) out[c * ld_out + r] = in[r * ld_in + c];
    }
}

}  // namespace

CompactHeadOptimizer::CompactHeadOptimizer(HeadWeights init, const AdamConfig& adam, double dropout,
                                           uint64_t seed, const CompactLayout& layout)
    : HeadOptimizer(std::move(init), adam, dropout, seed, /*dense_w1=*/false),
      layout_(layout),
      decay_(adam.weight_decay != 0.0),
      map_input_(layout.input() == CompactInput::kMap) {
  const int hd = w_.shape.rows1(), d = w_.shape.dim, k = layout_.windows();
  const int hw = layout_.h() * layout_.w();
  constexpr int kCells = CompactLayout::kCells;
  if (d != layout_.full_dim())
    throw Error(ErrorKind::kInvalidArgument, "compact head: W1 has " + std::to_string(d) +
                                                 " columns, the layout " +
                                                 std::to_string(layout_.full_dim()));
  for (int c0 = 0; c0 < layout_.channels(); c0 += kBlockChannels) {
    const size_t rows_before = static_cast<size_t>(c0) * hd;
    blocks_.push_back({c0, std::min(layout_.channels(), c0 + kBlockChannels), rows_before * k,
                       rows_before * hw, rows_before * kCells});
  }
  for (int c = 0; c < kBlockChannels; ++c)
    for (int win = 0; win < k; ++win) cells_.push_back(static_cast<float>(layout_.cells(win)));

  const size_t window_size = static_cast<size_t>(layout_.dim()) * hd;
  wc_.resize(window_size);
  if (map_input_) wz_.resize(static_cast<size_t>(layout_.channels()) * hw * hd);
  if (decay_) {
    w_full_.resize(w_.w1.size());
    m_full_.assign(w_.w1.size(), 0.0f);
    v_full_.assign(w_.w1.size(), 0.0f);
  } else {
    // W0 is needed until the end (W = W0 + U·Eᵀ); w_.w1 is made again only if weights() is asked.
    w0_ = std::move(w_.w1);
    w_.w1.clear();
    w0c_.resize(window_size);
    u_.assign(window_size, 0.0f);
    m_u_.assign(window_size, 0.0f);
    v_u_.assign(window_size, 0.0f);
  }
  const float* init_w1 = decay_ ? w_.w1.data() : w0_.data();
  tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t b) {
    const Block& blk = blocks_[b];
    const int nb = blk.c1 - blk.c0;
    // This block's columns of W0, transposed: nb·49 × hidden (kept when Adam is full width).
    std::vector<float> scratch;
    float* full = w_full_.data() + blk.full_off;
    if (!decay_) {
      scratch.resize(static_cast<size_t>(nb) * kCells * hd);
      full = scratch.data();
    }
    transpose(init_w1 + static_cast<size_t>(blk.c0) * kCells, hd, nb * kCells, d, full, hd);
    float* wc = wc_.data() + blk.window_off;
    layout_.sum_rows(full, nb, hd, wc);  // Wc = W0·E
    if (!decay_) std::copy_n(wc, static_cast<size_t>(nb) * k * hd, w0c_.data() + blk.window_off);
    if (map_input_) layout_.map_rows(wc, nb, hd, wz_.data() + blk.map_off);  // Wz = Wc·A
  });
  if (map_input_) std::vector<float>().swap(wc_);  // from now on made channel by channel
}

float* CompactHeadOptimizer::input_weights(const Block& blk) {
  return map_input_ ? wz_.data() + blk.map_off : wc_.data() + blk.window_off;
}

void CompactHeadOptimizer::forward_first_layer(const float* x, int n) {
  const int hd = w_.shape.rows1(), dc = layout_.input_dim(), per = layout_.input_per_channel();
  const size_t cells = static_cast<size_t>(n) * hd;
  const int nblocks = static_cast<int>(blocks_.size());
  partial_c_.resize(cells * nblocks);
  tbb::parallel_for(
      tbb::blocked_range<int>(0, nblocks, 1),
      [&](const tbb::blocked_range<int>& r) {
        for (int b = r.begin(); b != r.end(); ++b) {
          const Block& blk = blocks_[b];
          const int cols = (blk.c1 - blk.c0) * per;
          // partial_b (n × hidden) = x[:, block] (n × cols) · W_b (cols × hidden)
          sgemm(false, false, n, hd, cols, 1.0f, x + blk.c0 * per, dc, input_weights(blk), hd, 0.0f,
                partial_c_.data() + b * cells, hd);
        }
      },
      tbb::simple_partitioner());
  // h = b1 + Σ_b partial_b, in block order whatever the thread count.
  tbb::parallel_for(tbb::blocked_range<size_t>(0, cells, 2048),
                    [&](const tbb::blocked_range<size_t>& r) {
                      for (size_t i = r.begin(); i != r.end(); ++i) {
                        float s = w_.b1[i % hd];
                        for (int b = 0; b < nblocks; ++b) s += partial_c_[b * cells + i];
                        h_[i] = s;
                      }
                    });
}

// The GEMMs' weights for channel c of a block once its Wc rows (K × hidden) are final: Wc is the
// GEMMs' weight itself for window-mean input; map input maps it to the channel's Wz rows.
void CompactHeadOptimizer::finish_channel(const Block& blk, int c, const float* wc_rows) {
  if (!map_input_) return;
  const int hd = w_.shape.rows1(), hw = layout_.h() * layout_.w();
  layout_.map_rows(wc_rows, 1, hd, wz_.data() + blk.map_off + static_cast<size_t>(c) * hw * hd);
}

// Where channel c's Wc rows go: wc_ for window-mean input (the GEMMs read it), else a per-thread
// scratch that finish_channel() maps to Wz while it is in L1.
float* CompactHeadOptimizer::wc_rows(const Block& blk, int c) {
  const int hd = w_.shape.rows1(), k = layout_.windows();
  if (!map_input_) return wc_.data() + blk.window_off + static_cast<size_t>(c) * k * hd;
  std::vector<float>& rows = wc_scratch_.local();
  rows.resize(static_cast<size_t>(k) * hd);
  return rows.data();
}

// Weight decay 0: Adam on U with the window's gradient (what each of its cells would get), then
// Wc = W0·E + cells · U for the next forward, channel by channel while its rows are in cache.
// g: nb·K × hidden, this block's window gradient.
void CompactHeadOptimizer::update_shared(const Block& blk, const float* g, const AdamStep& s) {
  const int hd = w_.shape.rows1(), k = layout_.windows();
  const size_t rows = static_cast<size_t>(k) * hd;  // one channel's
  for (int c = 0; c < blk.c1 - blk.c0; ++c) {
    const size_t off = blk.window_off + c * rows;
    float* __restrict u = u_.data() + off;
    adam_update(u, m_u_.data() + off, v_u_.data() + off, g + c * rows, rows, s);
    const float* __restrict w0c = w0c_.data() + off;
    float* __restrict wc = wc_rows(blk, c);
    for (int r = 0; r < k; ++r) {
      const float cells = cells_[r];
      const size_t o = static_cast<size_t>(r) * hd;
      for (int j = 0; j < hd; ++j) wc[o + j] = w0c[o + j] + cells * u[o + j];
    }
    finish_channel(blk, c, wc);
  }
}

// Weight decay > 0: every cell's column gets its window's gradient and its own Adam update (the
// decay term differs per column); each channel's Wc rows are summed from its 49 updated rows
// while they are in cache.
void CompactHeadOptimizer::update_full(const Block& blk, const float* g, const AdamStep& s) {
  const int hd = w_.shape.rows1(), k = layout_.windows();
  constexpr int kCells = CompactLayout::kCells;
  for (int c = 0; c < blk.c1 - blk.c0; ++c) {
    const size_t chan = blk.full_off + static_cast<size_t>(c) * kCells * hd;
    for (int cell = 0; cell < kCells; ++cell) {
      const size_t off = chan + static_cast<size_t>(cell) * hd;
      const float* g_win = g + (static_cast<size_t>(c) * k + layout_.cell_window(cell)) * hd;
      adam_update(w_full_.data() + off, m_full_.data() + off, v_full_.data() + off, g_win, hd, s);
    }
    float* wc = wc_rows(blk, c);
    layout_.sum_rows(w_full_.data() + chan, 1, hd, wc);
    finish_channel(blk, c, wc);
  }
}

void CompactHeadOptimizer::backward_first_layer_and_adam(const float* x, int n, const AdamStep& s) {
  const int hd = w_.shape.rows1(), dc = layout_.input_dim(), per = layout_.input_per_channel();
  const int k = layout_.windows();
  tbb::parallel_for(
      tbb::blocked_range<size_t>(0, blocks_.size(), 1),
      [&](const tbb::blocked_range<size_t>& r) {
        std::vector<float>& g = grad_scratch_.local();
        std::vector<float>& gw = window_scratch_.local();
        for (size_t b = r.begin(); b != r.end(); ++b) {
          const Block& blk = blocks_[b];
          const int nb = blk.c1 - blk.c0, cols = nb * per;
          g.resize(std::max(g.size(), static_cast<size_t>(cols) * hd));
          // G_b (cols × hidden) = x[:, block]ᵀ (cols × n) · dh (n × hidden); K = n, a fixed order.
          sgemm(true, false, cols, hd, n, 1.0f, x + blk.c0 * per, dc, dh_.data(), hd, 0.0f,
                g.data(), hd);
          const float* g_windows = g.data();
          if (map_input_) {  // Gc = (dhᵀ·z)·Aᵀ: the windows' gradients from the map's
            gw.resize(std::max(gw.size(), static_cast<size_t>(nb) * k * hd));
            layout_.window_rows(g.data(), nb, hd, gw.data());
            g_windows = gw.data();
          }
          if (decay_)
            update_full(blk, g_windows, s);
          else
            update_shared(blk, g_windows, s);
        }
      },
      tbb::simple_partitioner());
  w1_stale_ = true;
  compact_stale_ = true;
}

void CompactHeadOptimizer::w1_from_state(const float* state, float* w1_out) const {
  const int hd = w_.shape.rows1(), d = w_.shape.dim, k = layout_.windows();
  constexpr int kCells = CompactLayout::kCells;
  tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t b) {
    const Block& blk = blocks_[b];
    const int nb = blk.c1 - blk.c0;
    const size_t col0 = static_cast<size_t>(blk.c0) * kCells;  // the block's first column
    float* w1 = w1_out + col0;
    if (decay_) {
      transpose(state + blk.full_off, nb * kCells, hd, hd, w1, d);
    } else {                                                   // W = W0 + U·Eᵀ
      std::vector<float> u(static_cast<size_t>(hd) * nb * k);  // U's block, hidden × nb·K
      transpose(state + blk.window_off, nb * k, hd, hd, u.data(), nb * k);
      layout_.expand_columns(u.data(), nb * k, hd, nb, w0_.data() + col0, w1, d);
    }
  });
}

std::vector<float> CompactHeadOptimizer::release_w1(const float* state) {
  if (decay_) return HeadOptimizer::release_w1(state);
  w1_from_state(state, w0_.data());  // W0 + U·Eᵀ in place: W0 is not needed again
  return std::move(w0_);
}

const HeadWeights* CompactHeadOptimizer::compact_weights() {
  check_not_spent("compact_weights");
  if (compact_stale_) {
    const int hd = w_.shape.rows1(), dc = layout_.input_dim(), per = layout_.input_per_channel();
    compact_.shape = w_.shape;
    compact_.shape.dim = dc;
    compact_.w1.resize(static_cast<size_t>(hd) * dc);
    tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t b) {  // into nn.Linear's layout
      const Block& blk = blocks_[b];
      transpose(input_weights(blk), (blk.c1 - blk.c0) * per, hd, hd,
                compact_.w1.data() + static_cast<size_t>(blk.c0) * per, dc);
    });
    compact_stale_ = false;
  }
  compact_.b1 = w_.b1;  // the other layers change at every step; copying them is cheap
  compact_.w2 = w_.w2;
  compact_.b2 = w_.b2;
  return &compact_;
}

std::unique_ptr<HeadOptimizer> make_head_optimizer(HeadWeights init, const AdamConfig& adam,
                                                   double dropout, uint64_t seed,
                                                   const CompactLayout* layout) {
  if (!layout) return std::make_unique<HeadOptimizer>(std::move(init), adam, dropout, seed);
  return std::make_unique<CompactHeadOptimizer>(std::move(init), adam, dropout, seed, *layout);
}

const HeadWeights& weights_for_source(HeadOptimizer& opt, const FeatureSource& src) {
  const HeadWeights* c = opt.compact_weights();
  if (c && src.dim() == c->shape.dim) return *c;
  return opt.weights();
}

Standardizer expand_standardizer(const Standardizer& s, const CompactLayout& layout) {
  if (s.empty()) return s;
  Standardizer full;
  full.mean.resize(layout.full_dim());
  full.std.resize(layout.full_dim());
  layout.expand_columns(s.mean.data(), layout.dim(), 1, layout.channels(), nullptr,
                        full.mean.data(), layout.full_dim());
  layout.expand_columns(s.std.data(), layout.dim(), 1, layout.channels(), nullptr, full.std.data(),
                        layout.full_dim());
  return full;
}

Standardizer full_width_standardizer(const Standardizer& s, const FeatureSource& train) {
  return train.compact() ? expand_standardizer(s, *train.compact()) : s;
}

VectorForm training_vectors(const std::string& train_dir, const std::string& test_dir,
                            bool full_width, bool standardize) {
  if (full_width) return VectorForm::kPooled;
  ReaderOptions opts;
  opts.allow_incomplete = true;  // only the metadata is read here; the sources check the rest
  opts.verify = false;
  const CacheMeta a = CacheReader::open(train_dir, opts)->meta();
  const CacheMeta b = CacheReader::open(test_dir, opts)->meta();
  if (!codec_is_prepool(a.codec) || !codec_is_prepool(b.codec) ||
      a.prepool_shape != b.prepool_shape)
    return VectorForm::kPooled;
  const CompactLayout layout = CompactLayout::from_meta(a);
  return !standardize && layout.payload_floats() < layout.dim() ? VectorForm::kMap
                                                                : VectorForm::kWindowMeans;
}

std::string compact_summary(const CompactLayout* layout) {
  if (!layout) return "";
  return fmt::format(
      "{} distinct columns of {}, GEMMs on the {}", layout->dim(), layout->full_dim(),
      layout->input() == CompactInput::kMap ? fmt::format("{}-value map", layout->payload_floats())
                                            : std::string("window means"));
}

}  // namespace vggcache
