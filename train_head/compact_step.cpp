#include "train_head/compact_step.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <algorithm>

#include "common/error.h"
#include "train_head/linalg.h"

namespace vggcache {

namespace {

// Channels per block: 8 blocks for VGG16's 512 channels (even work for 1, 2, 4 or 8 threads);
// at 64 px a block's gradient is 256 × 576 floats (590 KB), which stays in L2 until its update.
constexpr int kBlockChannels = 64;

}  // namespace

CompactHeadOptimizer::CompactHeadOptimizer(HeadWeights init, const AdamConfig& adam, double dropout,
                                           uint64_t seed, const CompactLayout& layout)
    : HeadOptimizer(std::move(init), adam, dropout, seed, /*dense_w1=*/false),
      layout_(layout),
      decay_(adam.weight_decay != 0.0) {
  const int hd = w_.shape.hidden, d = w_.shape.dim, k = layout_.windows();
  if (d != layout_.full_dim())
    throw Error(ErrorKind::kInvalidArgument, "compact head: W1 has " + std::to_string(d) +
                                                 " columns, the layout " +
                                                 std::to_string(layout_.full_dim()));
  for (int c0 = 0; c0 < layout_.channels(); c0 += kBlockChannels) {
    const int c1 = std::min(layout_.channels(), c0 + kBlockChannels);
    // Blocks before this one are whole, so offsets are c0 columns' worth of every row.
    blocks_.push_back({c0, c1, static_cast<size_t>(c0) * k * hd,
                       static_cast<size_t>(c0) * CompactLayout::kCells * hd});
  }
  for (int c = 0; c < kBlockChannels; ++c)
    for (int win = 0; win < k; ++win) cells_.push_back(static_cast<float>(layout_.cells(win)));

  wc_.resize(static_cast<size_t>(hd) * layout_.dim());
  if (decay_) {
    w_full_.resize(w_.w1.size());
    m_full_.assign(w_.w1.size(), 0.0f);
    v_full_.assign(w_.w1.size(), 0.0f);
  } else {
    w0_ = w_.w1;
    w0c_.resize(wc_.size());
    u_.assign(wc_.size(), 0.0f);
    m_u_.assign(wc_.size(), 0.0f);
    v_u_.assign(wc_.size(), 0.0f);
  }
  tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t b) {
    const Block& blk = blocks_[b];
    const int nb = blk.c1 - blk.c0, wk = nb * k, wf = nb * CompactLayout::kCells;
    const float* w1 = w_.w1.data() + static_cast<size_t>(blk.c0) * CompactLayout::kCells;
    float* wc = wc_.data() + blk.compact_off;
    layout_.sum_columns(w1, d, hd, nb, wc, wk);  // Wc = W0·E
    if (decay_) {
      for (int j = 0; j < hd; ++j)
        std::copy_n(w1 + static_cast<size_t>(j) * d, wf,
                    w_full_.data() + blk.full_off + static_cast<size_t>(j) * wf);
    } else {
      std::copy_n(wc, static_cast<size_t>(hd) * wk, w0c_.data() + blk.compact_off);
    }
  });
}

void CompactHeadOptimizer::forward_first_layer(const float* x, int n) {
  const int hd = w_.shape.hidden, dc = layout_.dim(), k = layout_.windows();
  const size_t cells = static_cast<size_t>(n) * hd;
  const int nblocks = static_cast<int>(blocks_.size());
  partial_c_.resize(cells * nblocks);
  tbb::parallel_for(
      tbb::blocked_range<int>(0, nblocks, 1),
      [&](const tbb::blocked_range<int>& r) {
        for (int b = r.begin(); b != r.end(); ++b) {
          const Block& blk = blocks_[b];
          const int wk = (blk.c1 - blk.c0) * k, col0 = blk.c0 * k;
          // partial_b (n × hidden) = x[:, block] (n × wk) · Wc_bᵀ (wk × hidden)
          sgemm(false, true, n, hd, wk, 1.0f, x + col0, dc, wc_.data() + blk.compact_off, wk, 0.0f,
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

// Weight decay 0: Adam on U with the window's gradient (what each of its cells would get), then
// Wc = W0·E + cells · U for the next forward. g: hidden × wk, this block's gradient.
void CompactHeadOptimizer::update_shared(const Block& blk, const float* g, const AdamStep& s) {
  const int hd = w_.shape.hidden, wk = (blk.c1 - blk.c0) * layout_.windows();
  for (int j = 0; j < hd; ++j) {
    const size_t off = blk.compact_off + static_cast<size_t>(j) * wk;
    float* u = u_.data() + off;
    adam_update(u, m_u_.data() + off, v_u_.data() + off, g + static_cast<size_t>(j) * wk, wk, s);
    const float* w0c = w0c_.data() + off;
    float* wc = wc_.data() + off;
    for (int i = 0; i < wk; ++i) wc[i] = w0c[i] + cells_[i] * u[i];
  }
}

// Weight decay > 0: every cell's column gets its window's gradient and its own Adam update (the
// decay term differs per column); Wc = W·E is summed from the updated row while it is in cache.
void CompactHeadOptimizer::update_full(const Block& blk, const float* g, const AdamStep& s) {
  const int hd = w_.shape.hidden, nb = blk.c1 - blk.c0;
  const int wk = nb * layout_.windows(), wf = nb * CompactLayout::kCells;
  std::vector<float>& row = row_scratch_.local();
  row.resize(wf);
  float* g_row = row.data();
  for (int j = 0; j < hd; ++j) {
    const size_t off = blk.full_off + static_cast<size_t>(j) * wf;
    layout_.expand_columns(g + static_cast<size_t>(j) * wk, wk, 1, nb, nullptr, g_row, wf);
    float* w = w_full_.data() + off;
    adam_update(w, m_full_.data() + off, v_full_.data() + off, g_row, wf, s);
    layout_.sum_columns(w, wf, 1, nb, wc_.data() + blk.compact_off + static_cast<size_t>(j) * wk,
                        wk);
  }
}

void CompactHeadOptimizer::backward_first_layer_and_adam(const float* x, int n, const AdamStep& s) {
  const int hd = w_.shape.hidden, dc = layout_.dim(), k = layout_.windows();
  tbb::parallel_for(
      tbb::blocked_range<size_t>(0, blocks_.size(), 1),
      [&](const tbb::blocked_range<size_t>& r) {
        std::vector<float>& g = grad_scratch_.local();
        for (size_t b = r.begin(); b != r.end(); ++b) {
          const Block& blk = blocks_[b];
          const int wk = (blk.c1 - blk.c0) * k;
          g.resize(std::max(g.size(), static_cast<size_t>(hd) * wk));
          // G_b (hidden × wk) = dhᵀ (hidden × n) · x[:, block] (n × wk); K = n, a fixed order.
          sgemm(true, false, hd, wk, n, 1.0f, dh_.data(), hd, x + blk.c0 * k, dc, 0.0f, g.data(),
                wk);
          if (decay_)
            update_full(blk, g.data(), s);
          else
            update_shared(blk, g.data(), s);
        }
      },
      tbb::simple_partitioner());
  w1_stale_ = true;
  compact_stale_ = true;
}

void CompactHeadOptimizer::refresh_w1() {
  const int hd = w_.shape.hidden, d = w_.shape.dim, k = layout_.windows();
  tbb::parallel_for(size_t{0}, blocks_.size(), [&](size_t b) {
    const Block& blk = blocks_[b];
    const int nb = blk.c1 - blk.c0, wf = nb * CompactLayout::kCells;
    const size_t col0 = static_cast<size_t>(blk.c0) * CompactLayout::kCells;
    if (decay_) {
      for (int j = 0; j < hd; ++j)
        std::copy_n(w_full_.data() + blk.full_off + static_cast<size_t>(j) * wf, wf,
                    w_.w1.data() + static_cast<size_t>(j) * d + col0);
    } else {  // W = W0 + U·Eᵀ
      layout_.expand_columns(u_.data() + blk.compact_off, nb * k, hd, nb, w0_.data() + col0,
                             w_.w1.data() + col0, d);
    }
  });
}

const HeadWeights* CompactHeadOptimizer::compact_weights() {
  if (compact_stale_) {
    const int hd = w_.shape.hidden, dc = layout_.dim(), k = layout_.windows();
    compact_.shape = w_.shape;
    compact_.shape.dim = dc;
    compact_.w1.resize(static_cast<size_t>(hd) * dc);
    for (const Block& blk : blocks_) {  // unblock Wc into nn.Linear's layout
      const int wk = (blk.c1 - blk.c0) * k;
      for (int j = 0; j < hd; ++j)
        std::copy_n(wc_.data() + blk.compact_off + static_cast<size_t>(j) * wk, wk,
                    compact_.w1.data() + static_cast<size_t>(j) * dc + blk.c0 * k);
    }
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

bool compact_caches(const std::string& train_dir, const std::string& test_dir) {
  ReaderOptions opts;
  opts.allow_incomplete = true;  // only the metadata is read here; the sources check the rest
  opts.verify = false;
  const CacheMeta a = CacheReader::open(train_dir, opts)->meta();
  const CacheMeta b = CacheReader::open(test_dir, opts)->meta();
  return a.codec == Codec::kPrepoolF32 && b.codec == Codec::kPrepoolF32 &&
         a.prepool_shape == b.prepool_shape;
}

}  // namespace vggcache
