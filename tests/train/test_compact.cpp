// The compact first layer (train_head/compact_*) against the full-width reference path: the same
// seed and batches from one prepool-f32 cache, read compactly and expanded; per-step losses and
// final weights (expanded to every column) must agree over 5 epochs to float rounding, with and
// without weight decay, dropout and standardisation, at 64, 100, 150 and 224 px. "To float
// rounding" is a bound derived from the length of the sums and the number of steps
// (testing::rounding_bound), widened only where reordering the reference's own sums under the
// same BLAS kernel shows a wider spread: no bound here is tuned to one kernel.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "common/error.h"
#include "common/prepool.h"
#include "head/compact_layout.h"
#include "head/feature_source.h"
#include "head/head_file.h"
#include "head/head_model.h"
#include "head/linalg.h"
#include "train_fixtures.h"
#include "train_head/batch_schedule.h"
#include "train_head/compact_step.h"
#include "train_head/imbalance.h"
#include "train_head/trainer.h"

namespace vggcache {
namespace {

// 160 channels: three channel blocks (64, 64, 32), so block edges and a short last block are
// exercised while the full-width reference stays quick (160 × 49 = 7,840 columns).
constexpr int kChannels = 160;

CacheMeta make_prepool_cache(const std::string& dir, int px, int images_per_class, int crops) {
  return testing::make_prepool_cache(dir, px, images_per_class, crops, kChannels);
}

using testing::map_side;

// ‖a − b‖ / ‖b‖ (Frobenius): the relative difference of a whole tensor.
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// max |a − b| / max |b|: the worst single element, for the report.
double worst_element(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den > 0 ? num / den : num;
}

TEST(CompactLayout, WindowMeansExpandToTheReaderVectorBitForBit) {
  Rng rng(3, Stream::kInit);
  for (int s : {1, 2, 3, 4, 5, 7}) {
    CompactLayout l(8, s, s);
    EXPECT_EQ(l.windows(), static_cast<int>(pool_windows(s, s).windows.size()));
    int cells = 0;
    for (int k = 0; k < l.windows(); ++k) cells += l.cells(k);
    EXPECT_EQ(cells, 49);
    std::vector<float> z(l.payload_floats()), x(l.full_dim()), m(l.dim()), xm(l.full_dim());
    for (auto& v : z) v = std::max(0.0f, 3.0f * testing::gaussian(rng));
    expand_prepool(z.data(), 8, s, s, x.data());
    l.window_means(z.data(), m.data());
    l.expand_columns(m.data(), l.dim(), 1, 8, nullptr, xm.data(), l.full_dim());
    EXPECT_EQ(std::memcmp(x.data(), xm.data(), x.size() * sizeof(float)), 0) << s << "×" << s;
  }
  EXPECT_EQ(CompactLayout(512, 2, 2).dim(), 4608);  // 64 px: 4,608 distinct values of 25,088
}

TEST(CompactLayout, SumColumnsIsTheTransposeOfExpand) {
  // ⟨W·E, m⟩ = ⟨W, E·m⟩ for every W and m: sum_columns is Eᵀ applied to rows.
  CompactLayout l(3, 3, 3);
  Rng rng(4, Stream::kInit);
  std::vector<float> w(l.full_dim()), m(l.dim()), wc(l.dim()), x(l.full_dim());
  for (auto& v : w) v = testing::gaussian(rng);
  for (auto& v : m) v = testing::gaussian(rng);
  l.sum_columns(w.data(), l.full_dim(), 1, 3, wc.data(), l.dim());
  l.expand_columns(m.data(), l.dim(), 1, 3, nullptr, x.data(), l.full_dim());
  double a = 0, b = 0;
  for (int i = 0; i < l.dim(); ++i) a += double(wc[i]) * m[i];
  for (int i = 0; i < l.full_dim(); ++i) b += double(w[i]) * x[i];
  EXPECT_NEAR(a, b, 1e-4 * std::abs(b));
}

// The row maps on transposed blocks against their column counterparts: sum_rows and window_rows
// are sum_columns and window_means applied to every row-vector lane, bit for bit; map_rows is
// window_rows' transpose (⟨A·z, m⟩ = ⟨z, Aᵀ·m⟩).
TEST(CompactLayout, RowMapsMatchTheColumnMaps) {
  Rng rng(5, Stream::kInit);
  constexpr int kWidth = 5, kN = 3;
  for (int s : {1, 2, 3, 4, 5, 7}) {
    SCOPED_TRACE(std::to_string(s) + "×" + std::to_string(s));
    const CompactLayout l(kN, s, s);
    const int k = l.windows(), hw = s * s;
    std::vector<float> cells(kN * 49 * kWidth), map(kN * hw * kWidth);
    for (auto& v : cells) v = testing::gaussian(rng);
    for (auto& v : map) v = std::max(0.0f, 2.0f * testing::gaussian(rng));
    std::vector<float> sums(kN * k * kWidth), means(kN * k * kWidth), back(kN * hw * kWidth);
    l.sum_rows(cells.data(), kN, kWidth, sums.data());
    l.window_rows(map.data(), kN, kWidth, means.data());
    l.map_rows(means.data(), kN, kWidth, back.data());
    for (int lane = 0; lane < kWidth; ++lane) {
      std::vector<float> w(kN * 49), z(kN * hw), wc(kN * k), m(kN * k);
      for (int r = 0; r < kN * 49; ++r) w[r] = cells[r * kWidth + lane];
      for (int r = 0; r < kN * hw; ++r) z[r] = map[r * kWidth + lane];
      l.sum_columns(w.data(), kN * 49, 1, kN, wc.data(), kN * k);
      l.window_means(z.data(), m.data());
      for (int r = 0; r < kN * k; ++r) {
        EXPECT_EQ(sums[r * kWidth + lane], wc[r]) << r;
        EXPECT_EQ(means[r * kWidth + lane], m[r]) << r;
      }
    }
    // Adjoint: Σ means·means = ⟨A·z, m⟩ with m = A·z, and ⟨z, Aᵀ·m⟩ must equal it.
    double a = 0, b = 0;
    for (size_t i = 0; i < means.size(); ++i) a += double(means[i]) * means[i];
    for (size_t i = 0; i < map.size(); ++i) b += double(map[i]) * back[i];
    EXPECT_NEAR(a, b, 1e-5 * std::abs(a));
  }
}

struct Case {
  int px;
  double weight_decay;
  double dropout;
  bool standardize;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  const int decay_exp =
      c.weight_decay > 0 ? static_cast<int>(std::lround(-std::log10(c.weight_decay))) : 0;
  return std::to_string(c.px) + "px" +
         (c.weight_decay > 0 ? "_decay1em" + std::to_string(decay_exp) : "") +
         (c.dropout > 0 ? "_dropout" : "") + (c.standardize ? "_standardize" : "");
}

class CompactExactness : public ::testing::TestWithParam<Case> {};

// The full-width problem with its channels permuted: mathematically the same training,
// numerically another summation order in the first layer's GEMMs. How far that moves the result,
// under whichever kernel runs, is the rounding floor any re-implementation of the first layer must
// be judged against.
class PermutedChannels : public FeatureSource {
 public:
  // order[c]: where channel c goes.
  PermutedChannels(FeatureSource& inner, std::vector<int> order)
      : inner_(inner), order_(std::move(order)) {}
  int dim() const override { return inner_.dim(); }
  int crops() const override { return inner_.crops(); }
  const std::vector<uint32_t>& images() const override { return inner_.images(); }
  int32_t label(uint32_t image) const override { return inner_.label(image); }
  void gather(const Item* items, int n, const Standardizer* s, float* out) override {
    std::vector<float> x(static_cast<size_t>(n) * dim());
    inner_.gather(items, n, s, x.data());
    permute(x.data(), n, dim(), order_, out);
  }
  // Moves channel c (49 columns) of each row of a rows × d matrix to order[c].
  static void permute(const float* in, int rows, int d, const std::vector<int>& order, float* out) {
    for (int r = 0; r < rows; ++r)
      for (size_t c = 0; c < order.size(); ++c)
        std::copy_n(in + static_cast<size_t>(r) * d + c * 49, 49,
                    out + static_cast<size_t>(r) * d + static_cast<size_t>(order[c]) * 49);
  }
  static std::vector<int> inverse(const std::vector<int>& order) {
    std::vector<int> inv(order.size());
    for (size_t c = 0; c < order.size(); ++c) inv[order[c]] = static_cast<int>(c);
    return inv;
  }

 private:
  FeatureSource& inner_;
  std::vector<int> order_;
};

// Three reorderings of `channels` channels: reversed, rotated by half, and a seeded shuffle.
std::vector<std::vector<int>> channel_orders(int channels) {
  std::vector<std::vector<int>> orders(3, std::vector<int>(channels));
  Rng rng(5, Stream::kInit);
  std::vector<int> shuffled(channels);
  std::iota(shuffled.begin(), shuffled.end(), 0);
  for (int i = channels - 1; i > 0; --i)
    std::swap(shuffled[i], shuffled[static_cast<int>(rng.uniform() * (i + 1)) % (i + 1)]);
  for (int c = 0; c < channels; ++c) {
    orders[0][c] = channels - 1 - c;
    orders[1][c] = (c + channels / 2) % channels;
    orders[2][c] = shuffled[c];
  }
  return orders;
}

// Runs 5 epochs of steps with `opt` on `src` (one crop per image per epoch, shuffled, as the
// trainer does) and returns the loss of every step.
std::vector<double> run_steps(HeadOptimizer& opt, FeatureSource& src, const Standardizer* s,
                              int epochs, int batch, uint64_t seed) {
  std::vector<double> losses;
  std::vector<float> x;
  std::vector<int32_t> labels;
  for (int e = 0; e < epochs; ++e) {
    std::vector<Item> items = epoch_items(src.images(), src.crops(), false, seed, e);
    for (size_t lo = 0; lo < items.size(); lo += batch) {
      const int n = static_cast<int>(std::min<size_t>(batch, items.size() - lo));
      x.resize(static_cast<size_t>(n) * src.dim());
      labels.resize(n);
      src.gather(items.data() + lo, n, s, x.data());
      for (int i = 0; i < n; ++i) labels[i] = src.label(items[lo + i].image);
      const uint64_t key = (static_cast<uint64_t>(e) << 32) | (lo / batch);
      losses.push_back(opt.step(x.data(), labels.data(), n, key).loss);
    }
  }
  return losses;
}

TEST_P(CompactExactness, SameLossesAndWeightsAsFullWidth) {
  const Case c = GetParam();
  configure_blas_for_tbb();
  testing::TempDir tmp;
  make_prepool_cache(tmp / "c", c.px, 48, 3);
  CacheSource full(tmp / "c", true, VectorForm::kPooled);
  ASSERT_EQ(full.compact(), nullptr);
  Standardizer s_full;
  if (c.standardize) s_full = compute_standardizer(full, full.images());
  const HeadWeights init = init_head({full.dim(), 32, 2}, 9);
  AdamConfig adam;
  adam.lr = 1e-3;
  // Adam's first step moves every weight by lr·g/(|g| + eps): by ±lr whatever |g| is, unless |g|
  // is below eps. At PyTorch's eps (1e-8) that makes the update discontinuous at the scale of
  // rounding: a gradient element that is zero but for rounding (|g| ≈ 1e-8 here, sums of 16
  // products) takes a full ±lr step of a sign the summation order decides, and which elements do
  // depends on the BLAS kernel (seen: 1 such element under Haswell/SkylakeX/Zen, ~3 under
  // Cooperlake, each moving the next loss by ~6e-6). That tests Adam's sign function, not the
  // first layer. With eps = 1e-6, 100 times those rounding errors, the update is continuous there
  // and the trajectories differ by rounding alone; every code path is the same as at 1e-8.
  adam.eps = 1e-6;
  adam.weight_decay = c.weight_decay;
  HeadOptimizer ref(init, adam, c.dropout, 9);
  constexpr int kEpochs = 5, kBatch = 16;
  const std::vector<double> want = run_steps(ref, full, &s_full, kEpochs, kBatch, 9);
  ASSERT_EQ(want.size(), 30u);  // 96 images / 16 per step × 5 epochs
  // Training moved (mean loss of the last epoch below the first's): not a comparison of flat lines.
  const size_t per_epoch = want.size() / kEpochs;
  const double first = std::accumulate(want.begin(), want.begin() + per_epoch, 0.0),
               last = std::accumulate(want.end() - per_epoch, want.end(), 0.0);
  EXPECT_LT(last, first);

  // The bound. Two float32 evaluations of the same training differ by rounding_bound(): sums of
  // full.dim() terms (the first layer's dot products), one round per step, so step t's loss may
  // differ by rounding_bound(dim, t) and the final weights by rounding_bound(dim, steps). Should
  // the trajectory amplify rounding after all (a ReLU input or a gradient within rounding of
  // zero), the full-width path measured against itself with its channels reordered (three
  // orders, same kernel) shows it: no re-implementation of the first layer can be held closer to
  // the reference than the reference is to itself, so twice the widest of those three spreads is
  // allowed where it exceeds the derived bound.
  const HeadWeights& b = ref.weights();
  std::vector<double> floor_loss(want.size(), 0.0);  // widest reordering's difference up to step t
  double floor_w1 = 0, floor_b1 = 0, floor_w2 = 0, floor_b2 = 0;
  for (const std::vector<int>& order : channel_orders(kChannels)) {
    PermutedChannels permuted(full, order);
    HeadWeights init_perm = init;
    PermutedChannels::permute(init.w1.data(), init.shape.hidden, full.dim(), order,
                              init_perm.w1.data());
    HeadOptimizer ref_perm(init_perm, adam, c.dropout, 9);
    const std::vector<double> losses = run_steps(ref_perm, permuted, &s_full, kEpochs, kBatch, 9);
    double running = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      running = std::max(running, std::abs(losses[i] - want[i]) / std::abs(want[i]));
      floor_loss[i] = std::max(floor_loss[i], running);
    }
    const HeadWeights& p = ref_perm.weights();
    std::vector<float> w1_back(init.w1.size());
    PermutedChannels::permute(p.w1.data(), init.shape.hidden, full.dim(),
                              PermutedChannels::inverse(order), w1_back.data());
    floor_w1 = std::max(floor_w1, rel_diff(w1_back, b.w1));
    floor_b1 = std::max(floor_b1, rel_diff(p.b1, b.b1));
    floor_w2 = std::max(floor_w2, rel_diff(p.w2, b.w2));
    floor_b2 = std::max(floor_b2, rel_diff(p.b2, b.b2));
  }
  const int steps = static_cast<int>(want.size());
  auto bound = [&](double floor, int rounds) {
    return std::max(testing::rounding_bound(full.dim(), rounds), 2 * floor);
  };
  EXPECT_GT(rel_diff(b.w1, init.w1), 1e-2);  // the columns really moved

  // Both compact inputs: the window means, and (unstandardised only) the map itself.
  std::vector<VectorForm> forms{VectorForm::kWindowMeans};
  if (!c.standardize) forms.push_back(VectorForm::kMap);
  for (VectorForm form : forms) {
    const bool map = form == VectorForm::kMap;
    SCOPED_TRACE(map ? "map input" : "window-mean input");
    CacheSource compact(tmp / "c", true, form);
    ASSERT_NE(compact.compact(), nullptr);
    const CompactLayout& layout = *compact.compact();
    ASSERT_EQ(full.dim(), layout.full_dim());
    ASSERT_EQ(compact.dim(), map ? layout.payload_floats() : layout.dim());
    Standardizer s_compact;
    if (c.standardize) {
      s_compact = compute_standardizer(compact, compact.images());
      // Cells sharing a window have identical values, hence identical statistics, bit for bit.
      Standardizer expanded = expand_standardizer(s_compact, layout);
      EXPECT_EQ(expanded.mean, s_full.mean);
      EXPECT_EQ(expanded.std, s_full.std);
    }
    CompactHeadOptimizer opt(init, adam, c.dropout, 9, layout);
    EXPECT_EQ(opt.shared_columns(), c.weight_decay == 0.0);
    const std::vector<double> got = run_steps(opt, compact, &s_compact, kEpochs, kBatch, 9);
    ASSERT_EQ(got.size(), want.size());
    double worst_loss = 0, worst_loss_bound = 1;  // the step closest to its bound
    for (size_t i = 0; i < want.size(); ++i) {
      const double rel = std::abs(got[i] - want[i]) / std::abs(want[i]);
      const double lim = bound(floor_loss[i], static_cast<int>(i) + 1);
      if (i == 0 || rel / lim > worst_loss / worst_loss_bound)
        worst_loss = rel, worst_loss_bound = lim;
      EXPECT_LE(rel, lim) << "step " << i + 1 << ": " << got[i] << " vs " << want[i];
    }
    const HeadWeights& a = opt.weights();  // expanded to every column
    const double dw1 = rel_diff(a.w1, b.w1), db1 = rel_diff(a.b1, b.b1), dw2 = rel_diff(a.w2, b.w2),
                 db2 = rel_diff(a.b2, b.b2);
    EXPECT_LE(dw1, bound(floor_w1, steps)) << "reordered full width " << floor_w1;
    EXPECT_LE(db1, bound(floor_b1, steps)) << "reordered full width " << floor_b1;
    EXPECT_LE(dw2, bound(floor_w2, steps)) << "reordered full width " << floor_w2;
    EXPECT_LE(db2, bound(floor_b2, steps)) << "reordered full width " << floor_b2;
    const std::string what = std::to_string(c.px) + " px " + (map ? "map" : "window means");
    testing::report_numerics(what + " step loss", worst_loss, worst_loss_bound);
    testing::report_numerics(what + " W1", dw1, bound(floor_w1, steps));
    testing::report_numerics(what + " b1, W2, b2",
                             std::max({db1 / bound(floor_b1, steps), dw2 / bound(floor_w2, steps),
                                       db2 / bound(floor_b2, steps)}),
                             1.0);
    std::printf(
        "%d px, %s, %d of %d columns: loss %.4f -> %.4f, worst step loss difference %.1e; W1 "
        "%.1e (worst element %.1e), full width reordered %.1e\n",
        c.px, map ? "map" : "window means", compact.dim(), layout.full_dim(), first / per_epoch,
        last / per_epoch, worst_loss, dw1, worst_element(a.w1, b.w1), floor_w1);

    // The compact head gives the full head's outputs on the compact vectors.
    const HeadWeights* hc = opt.compact_weights();
    ASSERT_NE(hc, nullptr);
    ASSERT_EQ(hc->shape.dim, compact.dim());
    std::vector<Item> items = all_items({0, 50}, 3);
    std::vector<float> xf(items.size() * full.dim()), xc(items.size() * compact.dim());
    full.gather(items.data(), 6, &s_full, xf.data());
    compact.gather(items.data(), 6, &s_compact, xc.data());
    std::vector<float> pf(12), pc(12);
    head_predict(a, xf.data(), 6, pf.data());
    head_predict(*hc, xc.data(), 6, pc.data());
    // Same weights, other summation order: one round of sums of full.dim() terms.
    for (int i = 0; i < 12; ++i)
      EXPECT_NEAR(pc[i], pf[i], testing::rounding_bound(full.dim())) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllSizes, CompactExactness,
                         ::testing::Values(Case{64, 0.0, 0.0, false}, Case{64, 0.0, 0.5, true},
                                           Case{64, 1e-2, 0.0, false}, Case{64, 1e-2, 0.5, true},
                                           Case{64, 1e-4, 0.5, false}, Case{100, 0.0, 0.5, false},
                                           Case{100, 1e-2, 0.0, true}, Case{150, 0.0, 0.0, true},
                                           Case{150, 1e-2, 0.5, false}, Case{224, 0.0, 0.5, true},
                                           Case{224, 1e-2, 0.0, false}),
                         case_name);

// A compact training outcome against the full-width one: per-epoch metrics and weights, within
// the rounding bound of sums of `dim` terms after epoch e's steps (`steps_per_epoch` each).
void compare_outcomes(const TrainOutcome& c, const TrainOutcome& f, int dim, int steps_per_epoch) {
  ASSERT_EQ(c.epochs.size(), 5u);
  double worst = 0;  // share of its bound
  for (size_t e = 0; e < 5; ++e) {
    const double tol = testing::rounding_bound(dim, steps_per_epoch * static_cast<int>(e + 1));
    EXPECT_NEAR(c.epochs[e].train_loss, f.epochs[e].train_loss, tol * f.epochs[e].train_loss);
    EXPECT_NEAR(c.epochs[e].val_loss, f.epochs[e].val_loss, tol * f.epochs[e].val_loss);
    EXPECT_NEAR(c.epochs[e].test_loss, f.epochs[e].test_loss, tol * f.epochs[e].test_loss);
    for (auto [a, b] : {std::pair{c.epochs[e].train_loss, f.epochs[e].train_loss},
                        std::pair{c.epochs[e].val_loss, f.epochs[e].val_loss},
                        std::pair{c.epochs[e].test_loss, f.epochs[e].test_loss}})
      worst = std::max(worst, std::abs(a - b) / (tol * b));
    EXPECT_EQ(c.epochs[e].test_accuracy, f.epochs[e].test_accuracy);
  }
  EXPECT_EQ(c.selected_epoch, f.selected_epoch);
  EXPECT_EQ(c.final_weights.w1.size(), f.final_weights.w1.size());  // full width, for head.bin
  const double tol = testing::rounding_bound(dim, steps_per_epoch * 5);
  const double final_w1 = rel_diff(c.final_weights.w1, f.final_weights.w1);
  EXPECT_LE(final_w1, tol);
  EXPECT_LE(rel_diff(c.selected_weights.w1, f.selected_weights.w1), tol);
  testing::report_numerics("epoch losses (share of bound)", worst, 1.0);
  testing::report_numerics("final W1", final_w1, tol);
}

// A run_training() of the caches in `tmp` read as `form` (5 epochs, batch 16, hidden 24, a fifth
// held out); `imbalance` adds --class-weight, --sampler and --select balanced.
TrainOutcome train_form(const testing::TempDir& tmp, VectorForm form, bool standardize,
                        bool imbalance, uint64_t seed = 3) {
  CacheSource train(tmp / "train", true, form), test(tmp / "test", true, form);
  TrainParams p;
  p.epochs = 5;
  p.batch = 16;
  p.hidden = 24;
  p.seed = seed;
  p.standardize = standardize;
  if (imbalance) p.class_weight = p.sampler = p.select = "balanced";
  ImageSplit split = split_images(train.images(), 0.2, p.seed);
  Standardizer s;
  if (standardize) s = compute_standardizer(train, split.train);
  TrainSetup setup;
  setup.train = &train;
  setup.test = &test;
  setup.train_images = split.train;
  setup.val_images = split.val;
  setup.standardizer = &s;
  setup.init = init_head({static_cast<int>(train.meta().dim), 24, 2}, seed);
  TrainOutcome out = run_training(p, setup, nullptr);
  if (standardize) EXPECT_EQ(full_width_standardizer(s, train).mean.size(), train.meta().dim);
  return out;
}

// The trainer picks the compact path from a compact source by itself, and its outcome (final and
// selected weights, per-epoch metrics) matches the full-width run.
TEST(CompactTrainer, RunTrainingMatchesFullWidth) {
  configure_blas_for_tbb();
  testing::TempDir tmp;
  make_prepool_cache(tmp / "train", 64, 40, 3);
  make_prepool_cache(tmp / "test", 64, 10, 1);
  for (bool standardize : {true, false}) {
    SCOPED_TRACE(standardize ? "window means, standardised" : "map");
    const VectorForm form = standardize ? VectorForm::kWindowMeans : VectorForm::kMap;
    // 80 images, 64 of them trained on in steps of 16.
    compare_outcomes(train_form(tmp, form, standardize, false),
                     train_form(tmp, VectorForm::kPooled, standardize, false), kChannels * 49, 4);
  }
}

// The class-weighted loss and the balanced sampler go through the compact first layer as through
// the full-width one.
TEST(CompactTrainer, ClassWeightsAndBalancedSamplerMatchFullWidth) {
  configure_blas_for_tbb();
  testing::TempDir tmp;
  make_prepool_cache(tmp / "train", 64, 40, 3);
  make_prepool_cache(tmp / "test", 64, 10, 1);
  // A seed whose held-out fifth leaves the classes unequal, so the weights are not all 1.
  uint64_t seed = 3;
  for (;; ++seed) {
    CacheSource train(tmp / "train", true, VectorForm::kMap);
    std::vector<int32_t> labels;
    for (uint32_t img : split_images(train.images(), 0.2, seed).train)
      labels.push_back(train.label(img));
    const std::vector<float> w = balanced_class_weights(labels, 2);
    if (w[0] != w[1]) break;
    ASSERT_LT(seed, 100u);
  }
  compare_outcomes(train_form(tmp, VectorForm::kMap, false, true, seed),
                   train_form(tmp, VectorForm::kPooled, false, true, seed), kChannels * 49, 4);
}

// train_head on tmp/train and tmp/test into tmp/out (3 epochs, batch 12, hidden 16, 2 threads);
// returns its log.
// Its heads after 3 epochs of 60 images in steps of 12 (15 steps), sums of C·49 terms.
const double kHeadBound = testing::rounding_bound(kChannels * 49, 15);
std::string run_train_head(const testing::TempDir& tmp, const std::string& out,
                           const std::string& flags) {
  std::string log;
  const std::string cmd = testing::shell_quote(testing::bin_dir() + "/train_head") + " --train " +
                          testing::shell_quote(tmp / "train") + " --test " +
                          testing::shell_quote(tmp / "test") + " --out " +
                          testing::shell_quote(tmp / out) +
                          " --epochs 3 --batch 12 --hidden 16 --threads 2 " + flags;
  EXPECT_EQ(testing::run_command(cmd, &log), 0) << log;
  return log;
}

// The tool end to end: two prepool-f32 caches train compactly by default, head.bin holds the
// full-width head and standardiser (what predict and featcache users expect), and --full-width
// gives the same head to rounding.
TEST(CompactTrainer, TrainHeadWritesAFullWidthHead) {
  testing::TempDir tmp;
  make_prepool_cache(tmp / "train", 64, 30, 2);
  make_prepool_cache(tmp / "test", 64, 8, 1);
  auto run = [&](const std::string& out, const std::string& extra) {
    return run_train_head(tmp, out, "--standardize " + extra);
  };
  // Standardised: GEMMs on the window means (160 channels × 9 windows at 64 px).
  EXPECT_NE(run("compact", "")
                .find("compact first layer: 1440 distinct columns of 7840, GEMMs on "
                      "the window means; Adam on the distinct columns"),
            std::string::npos);
  EXPECT_EQ(run("full", "--full-width").find("compact first layer"), std::string::npos);
  const HeadFile c = load_head(tmp / "compact/head.bin"), f = load_head(tmp / "full/head.bin");
  EXPECT_EQ(c.weights.shape.dim, kChannels * 49);
  ASSERT_EQ(c.weights.w1.size(), f.weights.w1.size());
  EXPECT_LE(rel_diff(c.weights.w1, f.weights.w1), kHeadBound);
  EXPECT_LE(rel_diff(c.weights.w2, f.weights.w2), kHeadBound);
  testing::report_numerics("head.bin W1", rel_diff(c.weights.w1, f.weights.w1), kHeadBound);
  EXPECT_EQ(c.standardizer.mean, f.standardizer.mean);  // expanded to every column, bit for bit
  EXPECT_EQ(c.standardizer.std, f.standardizer.std);
  EXPECT_EQ(c.features, f.features);
}

// Unstandardised, the GEMMs run on the map itself (160 channels × 2 × 2), and weight decay keeps
// Adam full width; the head is still the full-width one, equal to --full-width's to rounding.
TEST(CompactTrainer, TrainHeadRunsOnTheMapWhenNotStandardised) {
  testing::TempDir tmp;
  make_prepool_cache(tmp / "train", 64, 30, 2);
  make_prepool_cache(tmp / "test", 64, 8, 1);
  auto run = [&](const std::string& out, const std::string& extra) {
    return run_train_head(tmp, out, "--weight-decay 1e-3 " + extra);
  };
  EXPECT_NE(run("compact", "")
                .find("compact first layer: 1440 distinct columns of 7840, GEMMs on "
                      "the 640-value map; Adam full width for weight decay"),
            std::string::npos);
  run("full", "--full-width");
  const HeadFile c = load_head(tmp / "compact/head.bin"), f = load_head(tmp / "full/head.bin");
  ASSERT_EQ(c.weights.w1.size(), f.weights.w1.size());
  EXPECT_LE(rel_diff(c.weights.w1, f.weights.w1), kHeadBound);
  EXPECT_LE(rel_diff(c.weights.w2, f.weights.w2), kHeadBound);
  testing::report_numerics("head.bin W1", rel_diff(c.weights.w1, f.weights.w1), kHeadBound);
  EXPECT_TRUE(c.standardizer.mean.empty());
}

// Map vectors carry no per-window statistics: standardising them is refused, not approximated.
TEST(CompactTrainer, MapVectorsRefuseAStandardiser) {
  testing::TempDir tmp;
  make_prepool_cache(tmp / "c", 64, 4, 1);
  CacheSource means(tmp / "c", true, VectorForm::kWindowMeans),
      map(tmp / "c", true, VectorForm::kMap);
  const Standardizer s = compute_standardizer(means, means.images());
  std::vector<float> out(map.dim());
  const Item item{0, 0};
  try {
    map.gather(&item, 1, &s, out.data());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("map vectors cannot be standardised"), std::string::npos)
        << e.what();
  }
  map.gather(&item, 1, nullptr, out.data());  // unstandardised: the stored map
  EXPECT_EQ(map.dim(), kChannels * 4);
}

// Results do not depend on the thread count (fixed channel blocks, fixed summation order).
TEST(CompactTrainer, SameResultWithAnyThreadCount) {
  configure_blas_for_tbb();
  testing::TempDir tmp;
  make_prepool_cache(tmp / "c", 64, 24, 2);
  auto run = [&](int threads, double wd, VectorForm form) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    CacheSource src(tmp / "c", true, form);
    AdamConfig adam;
    adam.weight_decay = wd;
    CompactHeadOptimizer opt(init_head({src.compact()->full_dim(), 16, 2}, 1), adam, 0.5, 1,
                             *src.compact());
    run_steps(opt, src, nullptr, 2, 8, 1);
    return opt.weights().w1;
  };
  for (VectorForm form : {VectorForm::kWindowMeans, VectorForm::kMap})
    for (double wd : {0.0, 1e-3})
      EXPECT_EQ(run(1, wd, form), run(2, wd, form))
          << "weight decay " << wd << (form == VectorForm::kMap ? ", map" : ", window means");
}

// keep() holds the weights of a new best epoch in the optimizer's own form; take_kept_weights()
// gives exactly the weights weights() gave at keep() time, for every first layer, and spends the
// optimizer.
TEST(KeptWeights, AreTheWeightsAtKeepBitForBit) {
  configure_blas_for_tbb();
  testing::TempDir tmp;
  make_prepool_cache(tmp / "c", 64, 24, 2);
  struct Variant {
    const char* name;
    VectorForm form;  // kPooled: the dense full-width optimizer
    double wd;
  };
  for (const Variant& v :
       {Variant{"dense", VectorForm::kPooled, 0.0},
        Variant{"dense, decay", VectorForm::kPooled, 1e-3},
        Variant{"window means", VectorForm::kWindowMeans, 0.0},
        Variant{"map", VectorForm::kMap, 0.0}, Variant{"map, decay", VectorForm::kMap, 1e-3}}) {
    SCOPED_TRACE(v.name);
    CacheSource src(tmp / "c", true, v.form);
    AdamConfig adam;
    adam.weight_decay = v.wd;
    const int dim = src.compact() ? src.compact()->full_dim() : src.dim();
    std::unique_ptr<HeadOptimizer> opt =
        make_head_optimizer(init_head({dim, 16, 2}, 3), adam, 0.5, 3, src.compact());
    EXPECT_THROW(opt->take_kept_weights(), Error);  // nothing kept yet
    run_steps(*opt, src, nullptr, 1, 8, 3);
    const HeadWeights at_keep = opt->weights();
    opt->keep();
    run_steps(*opt, src, nullptr, 1, 8, 4);
    ASSERT_NE(opt->weights().w1, at_keep.w1);  // training went on after keep()
    const HeadWeights kept = opt->take_kept_weights();
    EXPECT_EQ(kept.shape.dim, dim);
    EXPECT_EQ(kept.w1, at_keep.w1);
    EXPECT_EQ(kept.b1, at_keep.b1);
    EXPECT_EQ(kept.w2, at_keep.w2);
    EXPECT_EQ(kept.b2, at_keep.b2);
    EXPECT_THROW(opt->weights(), Error);  // its buffers were given away
    EXPECT_THROW(opt->keep(), Error);
  }
}

}  // namespace
}  // namespace vggcache
