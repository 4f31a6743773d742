// FineTuner (finetune/finetune_step.h) against torch: block 5 + head trained together for 20 steps
// from the same pool4 maps, initial weights and batches (tests/py/ref_finetune_step.py), with
// torch.optim.Adam and torch.optim.SGD (momentum) in two parameter groups, dropout 0. Both are
// float32 evaluations of the same training with other summation orders, so they differ by
// rounding alone: each step's loss within 1e-5 relative (the figure of issue #15), and the final
// weights within the rounding bounds of weight_bound() and storage_bound() (compare_weights()).
// "Rounding alone" presumes that no decision of the training lies within rounding of a tie (a
// ReLU's pre-activation near 0, two pooled values nearly equal): one taken the other way moves
// block 5's weights by 1e-4 to 2e-3 of their movement, up to several times the rounding bound. At
// these sizes ties cannot be ruled out by construction (of the 20 steps' 4·10^6 ReLU decisions,
// about 10 a step in conv5_1 alone lie within the rounding bound of 0, against the absolute sum of
// their terms, in a float64 run), so the premise is checked instead: the setups below are ones
// whose float32 trainings, ours and torch's, stay within half the bounds of torch's float64
// training under each OpenBLAS kernel (VGGCACHE_FINETUNE_FLOAT64=1, see float64_check()).
// Also: a frozen block 5 stays bit-identical while the head follows train_head's HeadOptimizer on
// block 5's outputs (dropout on), the thread count changes no bit, and bad configurations and
// labels throw.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "../train/train_fixtures.h"
#include "common/error.h"
#include "finetune/block5.h"
#include "finetune/finetune_step.h"
#include "head/head_model.h"
#include "head/linalg.h"
#include "train_head/train_step.h"

namespace vggcache {
namespace {

using testing::read_raw;
using testing::write_raw;

constexpr int kC = kBlock5Channels;
constexpr int kH = 4, kW = 4;  // pool4 maps of 64 px crops
constexpr int kPool = 24, kBatch = 8, kSteps = 20, kHidden = 256;
constexpr size_t kMap = static_cast<size_t>(kC) * kH * kW;

std::vector<float> normal(size_t size, float stddev, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(size);
  for (float& f : v) f = dist(rng);
  return v;
}

struct Problem {
  int classes = 2;
  std::vector<float> x;        // kPool pool4 maps
  std::vector<int32_t> y;      // kPool labels
  std::vector<int32_t> sched;  // kSteps × kBatch indices into the pool
  Block5 block5;
  HeadWeights head;
};

// pool4-like maps (a max-pooled ReLU output: nonnegative, a share of exact zeros), max(0, N(shift,
// scale²)), labelled by which part of the channels is the most active, so training has something
// to learn; block 5 He-initialised as torchvision does (kaiming_normal_, fan_out 9·512) with small
// nonzero biases (N(0, bias_sd²)) so their gradients matter; the head as nn.Linear initialises it.
struct DataSpec {
  float scale, shift, bias_sd;
};
// Sparse, small maps: Adam at lr 1e-3 moves each hidden unit by about lr·Σ|features| per step,
// which dense maps of a few units turn into saturated sigmoids after one step.
constexpr DataSpec kSparse{0.5f, -0.25f, 0.01f};
// Dense maps of a few units.
constexpr DataSpec kDense{1.5f, 0.4f, 0.05f};
Problem make_problem(int classes, uint32_t seed, const DataSpec& spec = kSparse) {
  Problem p;
  p.classes = classes;
  std::mt19937 rng(seed);
  p.x = normal(kPool * kMap, spec.scale, rng);
  for (float& f : p.x) f = std::max(0.0f, f + spec.shift);
  for (int i = 0; i < kPool; ++i) {
    double best = -1;
    int label = 0;
    for (int c = 0; c < classes; ++c) {
      const float* part = p.x.data() + i * kMap + c * (kMap / classes);
      double s = 0;
      for (size_t j = 0; j < kMap / classes; ++j) s += part[j];
      if (s > best) best = s, label = c;
    }
    p.y.push_back(label);
  }
  for (int s = 0; s < kSteps; ++s)
    for (int i = 0; i < kBatch; ++i) p.sched.push_back((s * kBatch + i * 7) % kPool);
  for (int i = 0; i < 3; ++i)
    p.block5.set_layer(i, normal(static_cast<size_t>(kC) * kC * 9, std::sqrt(2.0f / 4608.0f), rng),
                       normal(kC, spec.bias_sd, rng));
  p.head = init_head(HeadShape{kBlock5OutputDim, kHidden, classes}, seed + 1);
  return p;
}

std::vector<float> batch_of(const Problem& p, int step, std::vector<int32_t>* labels) {
  std::vector<float> x(kBatch * kMap);
  labels->resize(kBatch);
  for (int i = 0; i < kBatch; ++i) {
    const int row = p.sched[step * kBatch + i];
    std::copy_n(p.x.data() + row * kMap, kMap, x.data() + i * kMap);
    (*labels)[i] = p.y[row];
  }
  return x;
}

// The ten tensors in the order of FineTuner's parameters and the file names the script uses.
struct Named {
  std::string name;
  std::vector<float> values;
  bool block5;
};
std::vector<Named> tensors(const Block5& b, const HeadWeights& h) {
  std::vector<Named> t;
  for (int i = 0; i < 3; ++i) {
    t.push_back({fmt::format("conv{}_w", i + 1), b.weight(i), true});
    t.push_back({fmt::format("conv{}_b", i + 1), b.bias(i), true});
  }
  t.push_back({"head_w1", h.w1, false});
  t.push_back({"head_b1", h.b1, false});
  t.push_back({"head_w2", h.w2, false});
  t.push_back({"head_b2", h.b2, false});
  return t;
}

// How far two float32 trainings' gradients may drift apart, relative: each step's gradients carry
// the rounding of the forward pass (block 5's three convolutions of 9·512 terms, the head's first
// layer of 25088) and of the longest gradient sums (over the n·h·w pixels of a conv weight's
// gradient), and the steps' independent roundings add up as a random walk (rounding_bound).
double weight_bound(int steps) {
  return 3 * testing::rounding_bound(9.0 * kC, steps) +
         testing::rounding_bound(kBlock5OutputDim, steps) +
         testing::rounding_bound(static_cast<double>(kBatch) * kH * kW, steps);
}

// The other rounding of a training step, relative to how far training moved the tensor: storing
// w − step in float32 rounds each weight by up to u of its value, not of the step. Where the
// steps are small next to the weights (block 5 at a tenth of the head's rate: 20 SGD steps move
// conv5_1 by 2.5e-4 of its norm), this is the larger term, u·‖W‖/‖W − W_init‖ = 2.4e-4 a step
// against weight_bound()'s 2e-4 for all 20. Two trainings round alike while their gradients agree
// bit for bit, independently once they do not. Independent roundings of the steps add up as a
// random walk; two trainings, so twice one's. (Checked against float64: torch's float32 training
// of SGD at a tenth, with no ReLU or pooling decision taken differently, ends 4.5e-4 of conv5_1's
// movement and 1.2e-3 of its bias's from the float64 one, where one training's bound is 1.1e-3
// and 2.8e-3; without this term the bound was 1e-4, and ours and torch's differed by 1e-3 under
// OpenBLAS Cooperlake and Sandybridge.)
double storage_bound(const std::vector<float>& init, const std::vector<float>& moved, int steps) {
  double w2 = 0, i2 = 0, m2 = 0;
  for (size_t i = 0; i < init.size(); ++i) {
    w2 += double(moved[i]) * moved[i];
    i2 += double(init[i]) * init[i];
    m2 += (double(moved[i]) - init[i]) * (double(moved[i]) - init[i]);
  }
  return 2 * std::sqrt(double(steps)) * testing::kUnitRoundoff * std::sqrt(std::max(w2, i2) / m2);
}

// One comparison of final weights (`ours` against `ref`, both started from `init`), as shares of
// their bounds. Per tensor, the Frobenius norm of the difference relative to how far training
// moved the tensor (‖W − W_ref‖ / ‖W_ref − W_init‖): a wrong gradient or update rule is off by a
// share of the movement, rounding by weight_bound() + storage_bound(). Largest elements: no
// weight may be off by more than a tenth of its group's step (0.1·lr) under Adam, as in
// tests/train/test_train_parity.cpp; under SGD, by more than the bound relative to the tensor's
// largest weight. `share` scales the bounds: 1 for two float32 trainings, 1/2 for one against
// float64 (each float32 training carries half of what two may differ by).
struct WeightDrift {
  double frobenius = 0, element = 0;  // the worst tensor's, as shares of their bounds
};
WeightDrift compare_weights(const std::vector<Named>& ours, const std::vector<Named>& init,
                            const std::vector<std::vector<double>>& ref, const FineTuneConfig& cfg,
                            double share, const std::string& label) {
  const bool adam = cfg.optimizer == FineTuneOptimizer::kAdam;
  WeightDrift worst;
  for (size_t k = 0; k < ours.size(); ++k) {
    const std::vector<double>& theirs = ref[k];
    std::vector<float> theirs_f(theirs.begin(), theirs.end());
    const double bound =
        share * (weight_bound(kSteps) + storage_bound(init[k].values, theirs_f, kSteps));
    double max_diff = 0, max_abs = 0, diff2 = 0, move2 = 0;
    for (size_t i = 0; i < theirs.size(); ++i) {
      const double d = std::abs(double(ours[k].values[i]) - theirs[i]);
      const double m = theirs[i] - init[k].values[i];
      max_diff = std::max(max_diff, d);
      max_abs = std::max(max_abs, std::abs(theirs[i]));
      diff2 += d * d;
      move2 += m * m;
    }
    EXPECT_GT(move2, 0) << ours[k].name << " never moved";
    const double rel = std::sqrt(diff2 / move2);
    EXPECT_LE(rel, bound) << label << ": " << ours[k].name;
    worst.frobenius = std::max(worst.frobenius, rel / bound);
    const double elem_bound =
        adam ? share * 0.1 * (ours[k].block5 ? cfg.lr_block5 : cfg.lr) : bound * max_abs;
    EXPECT_LE(max_diff, elem_bound) << label << ": " << ours[k].name;
    worst.element = std::max(worst.element, max_diff / elem_bound);
    std::printf("%s %-8s max diff %.3e (bound %.3e), Frobenius diff/move %.3e (bound %.3e)\n",
                label.c_str(), ours[k].name.c_str(), max_diff, elem_bound, rel, bound);
  }
  return worst;
}

// The reference script's tensors, named as `like`: ref_<name>.f32 (torch's float32 training) or,
// with float64, ref64_<name>.f64.
std::vector<std::vector<double>> read_tensors(const testing::TempDir& tmp,
                                              const std::vector<Named>& like, bool float64) {
  std::vector<std::vector<double>> out;
  for (const Named& t : like) {
    std::vector<double> v;
    if (float64) {
      v = read_raw<double>(tmp / ("ref64_" + t.name + ".f64"));
    } else {
      const std::vector<float> f = read_raw<float>(tmp / ("ref_" + t.name + ".f32"));
      v.assign(f.begin(), f.end());
    }
    EXPECT_EQ(v.size(), t.values.size()) << t.name;
    v.resize(t.values.size());
    out.push_back(std::move(v));
  }
  return out;
}

// Whether to train torch's reference a second time in float64 (VGGCACHE_FINETUNE_FLOAT64=1) and
// check both float32 trainings, ours and torch's, against it with half the bounds: the premise of
// the bounds (no ReLU or pooling decision of the 20 steps lies within float32 rounding of a tie,
// so the trainings differ by rounding alone), checked under the kernel this process runs. Off by
// default: float64 convolutions triple the test's time.
bool float64_check() {
  const char* env = std::getenv("VGGCACHE_FINETUNE_FLOAT64");
  return env && std::string(env) == "1";
}

// losses_only: compare the steps' losses only (the Winograd runs: weight_bound() is the direct
// convolution's). seed: make_problem()'s, 0 for 1500 + classes.
void run_parity(const FineTuneConfig& cfg, int classes, const DataSpec& spec = kSparse,
                bool losses_only = false, uint32_t seed = 0) {
  configure_blas_for_tbb();
  if (seed == 0) seed = 1500 + classes;
  const Problem p = make_problem(classes, seed, spec);
  const std::vector<Named> init = tensors(p.block5, p.head);
  testing::TempDir tmp;
  write_raw(tmp / "x.f32", p.x);
  write_raw(tmp / "y.i32", p.y);
  write_raw(tmp / "schedule.i32", p.sched);
  for (const Named& t : init) write_raw(tmp / (t.name + ".f32"), t.values);
  const bool adam = cfg.optimizer == FineTuneOptimizer::kAdam;
  const bool f64 = float64_check() && !losses_only;
  const nlohmann::json js = {{"pool", kPool},
                             {"h", kH},
                             {"w", kW},
                             {"hidden", kHidden},
                             {"classes", classes},
                             {"steps", kSteps},
                             {"batch", kBatch},
                             {"optimizer", adam ? "adam" : "sgd"},
                             {"lr", cfg.lr},
                             {"lr_block5", cfg.lr_block5},
                             {"eps", cfg.eps},
                             {"momentum", cfg.momentum},
                             {"weight_decay", cfg.weight_decay},
                             {"float64", f64}};
  testing::write_file(tmp / "config.json", js.dump());
  std::string log;
  ASSERT_EQ(testing::run_command(
                testing::python() + " " +
                    testing::shell_quote(testing::source_dir() + "/tests/py/ref_finetune_step.py") +
                    " " + testing::shell_quote(tmp.path()),
                &log),
            0)
      << log;
  const std::vector<double> ref_losses = read_raw<double>(tmp / "ref_losses.f64");
  ASSERT_EQ(ref_losses.size(), static_cast<size_t>(kSteps));
  std::vector<double> ref64_losses;
  if (f64) {
    ref64_losses = read_raw<double>(tmp / "ref64_losses.f64");
    ASSERT_EQ(ref64_losses.size(), static_cast<size_t>(kSteps));
  }

  FineTuner ft(p.block5, p.head, cfg);
  std::vector<int32_t> labels;
  constexpr double kLossBound = 1e-5;
  double worst_loss = 0, worst_ours64 = 0, worst_torch64 = 0;
  for (int s = 0; s < kSteps; ++s) {
    const std::vector<float> x = batch_of(p, s, &labels);
    const FineTuneStats st = ft.step(x, kBatch, kH, kW, labels.data(), s);
    const double rel = std::abs(st.loss - ref_losses[s]) / std::abs(ref_losses[s]);
    EXPECT_LE(rel, kLossBound) << "step " << s + 1 << ": " << st.loss << " vs " << ref_losses[s];
    worst_loss = std::max(worst_loss, rel);
    if (f64) {
      const double exact = std::abs(ref64_losses[s]);
      worst_ours64 = std::max(worst_ours64, std::abs(st.loss - ref64_losses[s]) / exact);
      worst_torch64 = std::max(worst_torch64, std::abs(ref_losses[s] - ref64_losses[s]) / exact);
    }
  }
  const std::string what =
      fmt::format("finetune {} {} classes{}", adam ? "adam" : "sgd", classes,
                  cfg.block5_conv == Block5Conv::kWinograd ? " (winograd)" : "");
  testing::report_numerics(what + ": step loss vs torch", worst_loss, kLossBound);
  std::printf("torch losses:");
  for (double l : ref_losses) std::printf(" %.4f", l);
  std::printf("\n");
  EXPECT_LT(ref_losses.back(), ref_losses.front());  // the comparison is not of a flat line
  if (losses_only) return;

  // The norm, not the largest element, carries the tight bound, because a decision within
  // rounding of a tie (a ReLU's pre-activation near 0, two pooled values nearly equal) may go
  // either way and then changes one pixel's share of a step's gradient: visible in a few
  // elements, less in the norm. The setups below are chosen to keep clear of such ties (see
  // float64_check()).
  const std::vector<Named> ours = tensors(ft.block5(), ft.head());
  const WeightDrift drift =
      compare_weights(ours, init, read_tensors(tmp, init, false), cfg, 1.0, "vs torch");
  testing::report_numerics(what + ": weights vs torch, Frobenius relative to the movement (share)",
                           drift.frobenius, 1.0);
  testing::report_numerics(what + ": weights vs torch, largest element (share of its bound)",
                           drift.element, 1.0);
  if (!f64) return;
  EXPECT_LE(worst_ours64, kLossBound / 2);
  EXPECT_LE(worst_torch64, kLossBound / 2);
  testing::report_numerics(what + ": step loss vs float64", worst_ours64, kLossBound / 2);
  testing::report_numerics(what + ": torch's step loss vs float64", worst_torch64, kLossBound / 2);
  const std::vector<std::vector<double>> exact = read_tensors(tmp, init, true);
  const WeightDrift ours64 = compare_weights(ours, init, exact, cfg, 0.5, "ours vs float64");
  std::vector<Named> theirs = init;
  const std::vector<std::vector<double>> ref32 = read_tensors(tmp, init, false);
  for (size_t k = 0; k < theirs.size(); ++k)
    theirs[k].values.assign(ref32[k].begin(), ref32[k].end());
  const WeightDrift torch64 = compare_weights(theirs, init, exact, cfg, 0.5, "torch vs float64");
  testing::report_numerics(what + ": weights vs float64, Frobenius (share)", ours64.frobenius, 1.0);
  testing::report_numerics(what + ": weights vs float64, largest element (share)", ours64.element,
                           1.0);
  testing::report_numerics(what + ": torch's weights vs float64, Frobenius (share)",
                           torch64.frobenius, 1.0);
  testing::report_numerics(what + ": torch's weights vs float64, largest element (share)",
                           torch64.element, 1.0);
}

// The parity runs compute as torch does, the direct convolution and the head on the 25088
// pooled features, whose roundings weight_bound() is derived for. Winograd's rounding is checked
// convolution by convolution (test_winograd.cpp), its steps' losses below, and its training
// against PyTorch's statistically (bench/finetune_parity.sh); the compact head against the
// full-width one below.
FineTuneConfig adam_config() {
  FineTuneConfig c;
  c.block5_conv = Block5Conv::kDirect;
  c.compact_head = false;
  c.optimizer = FineTuneOptimizer::kAdam;
  c.lr = 1e-3;
  c.lr_block5 = 1e-4;
  return c;
}

FineTuneConfig sgd_config() {
  FineTuneConfig c;
  c.block5_conv = Block5Conv::kDirect;
  c.compact_head = false;
  c.optimizer = FineTuneOptimizer::kSgd;
  c.lr = 1e-2;
  c.lr_block5 = 1e-3;
  c.momentum = 0.9;
  return c;
}

// At adam_config()'s rates the sigmoid saturates by step 3 (loss 8.4) and float32 training is
// ill-conditioned: torch's float32 training ends 1.4e-2 of the movement from its float64 one (70
// times the bound), weights up to 12·lr apart. At a tenth: 3e-5, and 0.02·lr.
TEST(FineTuneParity, AdamMatchesTorch) {
  FineTuneConfig c = adam_config();
  c.lr /= 10;
  c.lr_block5 /= 10;
  run_parity(c, 2);
}
// SGD runs on dense maps (on the sparse ones, many of block 5's pre-activations lie near 0).
// Two classes on dense maps saturate the sigmoid at lr 1e-2 (loss 62.5 from step 3), so a tenth.
// The seeds are ones clear of ties (see the top of this file). With make_problem()'s 1502, ours
// (OpenBLAS Cooperlake) or torch's (Sandybridge) float32 training takes a decision the other way
// from float64 (by the differences, one of conv5_3's), which moves every block 5 tensor by 1e-3
// of its movement; with 1503 (three classes), ours takes one of conv5_1 (at step 17, a
// pre-activation 4e-9 of its terms' absolute sum) the other way under every kernel: 1.8e-4 of
// conv5_1's movement, past half the bound.
TEST(FineTuneParity, SgdMomentumMatchesTorch) {
  FineTuneConfig c = sgd_config();
  c.lr /= 10;
  c.lr_block5 /= 10;
  run_parity(c, 2, kDense, false, 1512);
}
TEST(FineTuneParity, ThreeClassesSgdWithWeightDecayMatchesTorch) {
  FineTuneConfig c = sgd_config();
  c.weight_decay = 5e-4;
  run_parity(c, 3, kDense, false, 1513);
}

// Winograd's training steps (train_head's default at 4 × 4 maps) against torch's: the losses of
// 20 steps within 1e-5, on dense maps. (On the sparse ones, an output that is exactly 0 in the
// direct sum, every input of its window being 0, comes out of Winograd's tile transforms as a
// rounding residue of the other pixels: its ReLU then passes a gradient torch's blocks, and Adam
// turns that rounding-size gradient into a full-size step.)
TEST(FineTuneParity, WinogradSgdLossesMatchTorch) {
  FineTuneConfig c = sgd_config();
  c.block5_conv = Block5Conv::kWinograd;
  c.lr /= 10;
  c.lr_block5 /= 10;
  run_parity(c, 2, kDense, true);
}
TEST(FineTuneParity, WinogradAdamLossesMatchTorch) {
  FineTuneConfig c = adam_config();  // a twentieth of the rates: the dense maps saturate at 1e-3
  c.block5_conv = Block5Conv::kWinograd;
  c.lr /= 20;
  c.lr_block5 /= 20;
  run_parity(c, 2, kDense, true);
}

// Frozen block 5: its weights stay bit-identical, and the head follows train_head's HeadOptimizer
// (an independent implementation of the head's step, with the same dropout masks) trained on
// block 5's outputs, within the head parity test's bounds (tests/train/test_train_parity.cpp).
TEST(FineTuneFreeze, Block5StaysAndHeadFollowsHeadOptimizer) {
  configure_blas_for_tbb();
  const Problem p = make_problem(2, 77);
  FineTuneConfig cfg = adam_config();
  cfg.freeze_block5 = true;
  cfg.dropout = 0.5;
  cfg.seed = 9;
  FineTuner ft(p.block5, p.head, cfg);
  AdamConfig ac;
  ac.lr = cfg.lr;
  HeadOptimizer ref(p.head, ac, cfg.dropout, cfg.seed);
  std::vector<int32_t> labels;
  constexpr int kFrozenSteps = 10;
  for (int s = 0; s < kFrozenSteps; ++s) {
    const std::vector<float> x = batch_of(p, s, &labels);
    Block5Activations act;
    const std::vector<float> feat = p.block5.forward(x, kBatch, kH, kW, &act);
    const StepStats want = ref.step(feat.data(), labels.data(), kBatch, s);
    const FineTuneStats got = ft.step(x, kBatch, kH, kW, labels.data(), s);
    EXPECT_NEAR(got.loss, want.loss,
                testing::rounding_bound(kBlock5OutputDim, s + 1) * std::abs(want.loss))
        << "step " << s + 1;
    EXPECT_EQ(got.correct, want.correct) << "step " << s + 1;
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(ft.block5().weight(i) == p.block5.weight(i)) << Block5::weight_name(i);
    EXPECT_TRUE(ft.block5().bias(i) == p.block5.bias(i)) << Block5::bias_name(i);
  }
  const HeadWeights& want = ref.weights();
  const HeadWeights& got = ft.head();
  double worst = 0;
  for (auto [a, b] : {std::pair{&got.w1, &want.w1}, std::pair{&got.b1, &want.b1},
                      std::pair{&got.w2, &want.w2}, std::pair{&got.b2, &want.b2}}) {
    ASSERT_EQ(a->size(), b->size());
    for (size_t i = 0; i < a->size(); ++i)
      worst = std::max(worst, static_cast<double>(std::abs((*a)[i] - (*b)[i])));
  }
  EXPECT_LE(worst, 0.1 * cfg.lr);
  EXPECT_GT(worst, 0.0);  // two implementations: equal only by accident
  testing::report_numerics("finetune frozen: head vs HeadOptimizer, largest difference / lr",
                           worst / cfg.lr, 0.1);
}

// Every part runs over blocks fixed by the shapes, so the thread count changes no bit.
// The compact head (train_head's default at 64 px) against the full-width one torch's layout
// uses: the same function summed in another order, so over 5 SGD steps the losses agree within
// 1e-5 and no weight is off by more than weight_bound() of its tensor's largest.
TEST(FineTuneCompact, SameStepsAsTheFullWidthHead) {
  configure_blas_for_tbb();
  const Problem p = make_problem(2, 41, kDense);
  constexpr int kCompactSteps = 5;
  auto run = [&](bool compact) {
    FineTuneConfig cfg = sgd_config();
    cfg.lr /= 10;
    cfg.lr_block5 /= 10;
    cfg.compact_head = compact;
    FineTuner ft(p.block5, p.head, cfg);
    std::vector<int32_t> labels;
    std::vector<double> losses;
    for (int s = 0; s < kCompactSteps; ++s) {
      const std::vector<float> x = batch_of(p, s, &labels);
      losses.push_back(ft.step(x, kBatch, kH, kW, labels.data(), s).loss);
    }
    return std::pair{losses, tensors(ft.block5(), ft.head())};
  };
  const auto full = run(false), compact = run(true);
  for (int s = 0; s < kCompactSteps; ++s)
    EXPECT_LE(std::abs(compact.first[s] - full.first[s]) / std::abs(full.first[s]), 1e-5)
        << "step " << s + 1;
  const std::vector<Named> init = tensors(p.block5, p.head);
  for (size_t k = 0; k < full.second.size(); ++k) {
    const std::vector<float>& a = full.second[k].values;
    const std::vector<float>& b = compact.second[k].values;
    double max_abs = 0, max_diff = 0, moved = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      max_abs = std::max(max_abs, static_cast<double>(std::abs(a[i])));
      max_diff = std::max(max_diff, static_cast<double>(std::abs(a[i] - b[i])));
      moved = std::max(moved, static_cast<double>(std::abs(a[i] - init[k].values[i])));
    }
    EXPECT_LE(max_diff, weight_bound(kCompactSteps) * max_abs) << full.second[k].name;
    EXPECT_GT(moved, 0.0) << full.second[k].name << " did not train";
  }
}

// Both the convolutions and head layouts torch's runs use and train_head's defaults (Winograd,
// the compact head).
TEST(FineTuneThreads, BitwiseSameForAnyThreadCount) {
  configure_blas_for_tbb();
  const Problem p = make_problem(2, 31);
  for (const bool defaults : {false, true}) {
    FineTuneConfig cfg = sgd_config();
    if (defaults) cfg = FineTuneConfig{FineTuneOptimizer::kSgd, cfg.lr, cfg.lr_block5};
    cfg.dropout = 0.3;
    auto run = [&](int threads) {
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
      FineTuner ft(p.block5, p.head, cfg);
      std::vector<int32_t> labels;
      std::vector<double> losses;
      for (int s = 0; s < 2; ++s) {
        const std::vector<float> x = batch_of(p, s, &labels);
        losses.push_back(ft.step(x, kBatch, kH, kW, labels.data(), s).loss);
      }
      std::vector<float> all;
      for (const Named& t : tensors(ft.block5(), ft.head()))
        all.insert(all.end(), t.values.begin(), t.values.end());
      return std::pair{losses, all};
    };
    const auto one = run(1), three = run(3);
    EXPECT_EQ(one.first, three.first) << (defaults ? "defaults" : "as torch");
    EXPECT_TRUE(one.second == three.second) << (defaults ? "defaults" : "as torch");
  }
}

template <typename F>
void expect_error(ErrorKind kind, const std::string& part, F&& f) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning \"" << part << "\"";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(FineTuneErrors, BadConfigHeadAndLabelsThrow) {
  const Problem p = make_problem(2, 5);
  FineTuneConfig c = adam_config();
  c.lr_block5 = 0;
  expect_error(ErrorKind::kInvalidArgument, "lr_block5 must be > 0",
               [&] { FineTuner(p.block5, p.head, c); });
  c = sgd_config();
  c.momentum = 1.0;
  expect_error(ErrorKind::kInvalidArgument, "momentum", [&] { FineTuner(p.block5, p.head, c); });
  expect_error(ErrorKind::kMismatch, "the head takes 100 features", [&] {
    FineTuner(p.block5, init_head(HeadShape{100, 8, 2}, 1), adam_config());
  });
  expect_error(ErrorKind::kInvalidArgument, "features.24.weight was never set",
               [&] { FineTuner(Block5(), p.head, adam_config()); });

  FineTuner ft(p.block5, p.head, adam_config());
  std::vector<int32_t> labels;
  const std::vector<float> x = batch_of(p, 0, &labels);
  labels[3] = 2;
  expect_error(ErrorKind::kInvalidArgument, "label 2 of item 3",
               [&] { ft.step(x, kBatch, kH, kW, labels.data(), 0); });
  labels[3] = 0;
  expect_error(ErrorKind::kMismatch, "block 5: input has",
               [&] { ft.step(x, kBatch - 1, kH, kW, labels.data(), 0); });
  // Nothing moved.
  EXPECT_EQ(ft.steps_taken(), 0);
  EXPECT_TRUE(ft.head().w1 == p.head.w1);
  EXPECT_TRUE(ft.block5().weight(0) == p.block5.weight(0));
}

// W1's optimizer state by groups of pooled features (group_w1_state, train_head's default with the
// compact head) against one state per weight: the same floats, step for step, for Adam and SGD,
// with dropout; and a step on maps of another size (6 × 6: other groups) hands each weight its
// group's state, so the run goes on as the per-weight one does.
TEST(FineTuneCompact, GroupedW1StateGivesTheSameFloatsAsPerWeight) {
  configure_blas_for_tbb();
  const Problem p = make_problem(2, 53);
  std::mt19937 rng(7);
  std::vector<float> wide = normal(static_cast<size_t>(kBatch) * kC * 6 * 6, 0.5f, rng);
  for (float& f : wide) f = std::max(0.0f, f);
  for (const bool adam : {true, false}) {
    auto run = [&](bool grouped) {
      FineTuneConfig cfg = adam ? adam_config() : sgd_config();
      cfg.block5_conv = Block5Conv::kAuto;
      cfg.compact_head = true;
      cfg.dropout = 0.3;
      cfg.group_w1_state = grouped;
      FineTuner ft(p.block5, p.head, cfg);
      std::vector<int32_t> labels;
      std::vector<double> losses;
      for (int s = 0; s < 4; ++s) {
        const std::vector<float> x = batch_of(p, s, &labels);
        losses.push_back(ft.step(x, kBatch, kH, kW, labels.data(), s).loss);
      }
      losses.push_back(ft.step(wide, kBatch, 6, 6, labels.data(), 4).loss);
      const std::vector<float> x = batch_of(p, 5, &labels);
      losses.push_back(ft.step(x, kBatch, kH, kW, labels.data(), 5).loss);
      return std::pair{losses, tensors(ft.block5(), ft.head())};
    };
    const auto per_weight = run(false), grouped = run(true);
    EXPECT_EQ(grouped.first, per_weight.first) << (adam ? "adam" : "sgd");
    for (size_t k = 0; k < grouped.second.size(); ++k)
      EXPECT_TRUE(grouped.second[k].values == per_weight.second[k].values)
          << (adam ? "adam " : "sgd ") << grouped.second[k].name;
    EXPECT_FALSE(grouped.second[6].values == p.head.w1) << "W1 did not train";
  }
}

}  // namespace
}  // namespace vggcache
