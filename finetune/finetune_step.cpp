#include "finetune/finetune_step.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <algorithm>
#include <string>

#include "common/error.h"
#include "finetune/sgd.h"
#include "head/adam.h"
#include "head/head_step_parts.h"
#include "head/linalg.h"

namespace vggcache {

namespace {

// Columns per task of the head's first-layer backward GEMMs. Their sums run over n or hidden,
// never over the split columns, so the split changes no result.
constexpr int kBlockCols = 1024;
// Values per task of the elementwise updates.
constexpr size_t kUpdateChunk = 1 << 16;

void check_config(const FineTuneConfig& c) {
  auto bad = [](const std::string& what) {
    throw Error(ErrorKind::kInvalidArgument, "fine-tuning: " + what);
  };
  if (!(c.lr > 0)) bad("lr must be > 0, got " + std::to_string(c.lr));
  if (!(c.lr_block5 > 0)) bad("lr_block5 must be > 0, got " + std::to_string(c.lr_block5));
  if (!(c.dropout >= 0 && c.dropout < 1)) bad("dropout must be in [0, 1)");
  if (!(c.momentum >= 0 && c.momentum < 1)) bad("momentum must be in [0, 1)");
  if (!(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1)) bad("betas must be in [0, 1)");
  if (!(c.eps > 0)) bad("eps must be > 0");
  if (!(c.weight_decay >= 0)) bad("weight_decay must be ≥ 0");
}

void column_sums(const float* m, int rows, int cols, float* out) {
  std::fill(out, out + cols, 0.0f);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) out[j] += m[static_cast<size_t>(i) * cols + j];
}

}  // namespace

FineTuner::FineTuner(Block5 block5, HeadWeights head, const FineTuneConfig& config)
    : block5_(std::move(block5)), head_(std::move(head)), config_(config) {
  check_config(config_);
  const HeadShape& sh = head_.shape;
  if (sh.dim != kBlock5OutputDim)
    throw Error(ErrorKind::kMismatch, "fine-tuning: the head takes " + std::to_string(sh.dim) +
                                          " features, block 5 gives " +
                                          std::to_string(kBlock5OutputDim));
  if (sh.hidden < 1 || sh.classes < 2 ||
      head_.w1.size() != static_cast<size_t>(sh.hidden) * sh.dim ||
      head_.b1.size() != static_cast<size_t>(sh.hidden) ||
      head_.w2.size() != static_cast<size_t>(sh.outputs()) * sh.hidden ||
      head_.b2.size() != static_cast<size_t>(sh.outputs()))
    throw Error(ErrorKind::kMismatch, "fine-tuning: the head's weights do not match its shape");
  if (!config_.class_weight.empty() &&
      (config_.class_weight.size() != static_cast<size_t>(sh.classes) ||
       std::any_of(config_.class_weight.begin(), config_.class_weight.end(),
                   [](float w) { return !(w >= 0); })))
    throw Error(ErrorKind::kInvalidArgument,
                "fine-tuning: class_weight needs one weight >= 0 per class (" +
                    std::to_string(sh.classes) + "), got " +
                    std::to_string(config_.class_weight.size()));
  for (int i = 0; i < 3; ++i) {
    if (block5_.weight(i).empty())
      throw Error(ErrorKind::kInvalidArgument,
                  "fine-tuning: " + Block5::weight_name(i) + " was never set (set_layer)");
    params_[2 * i] = {block5_.weight_data(i), block5_.weight(i).size(), true, {}, {}, {}};
    params_[2 * i + 1] = {block5_.bias_data(i), block5_.bias(i).size(), true, {}, {}, {}};
  }
  params_[6] = {head_.w1.data(), head_.w1.size(), false, {}, {}, {}};
  params_[7] = {head_.b1.data(), head_.b1.size(), false, {}, {}, {}};
  params_[8] = {head_.w2.data(), head_.w2.size(), false, {}, {}, {}};
  params_[9] = {head_.b2.data(), head_.b2.size(), false, {}, {}, {}};
  const bool adam = config_.optimizer == FineTuneOptimizer::kAdam;
  for (size_t k = 0; k < params_.size(); ++k) {
    Param& p = params_[k];
    if (p.block5 && config_.freeze_block5) continue;  // never stepped: no state
    if (k == 6) continue;  // W1: per weight or by groups, chosen by the first step (w1_grouped)
    p.grad.resize(p.size);
    p.s1.assign(p.size, 0.0f);  // torch's zero moments; SGD's buffer is set on the first step
    if (adam) p.s2.assign(p.size, 0.0f);
  }
}

FineTuneStats FineTuner::step(const std::vector<float>& x, int n, int h, int w,
                              const int32_t* labels, uint64_t step_key) {
  const int classes = head_.shape.classes;
  for (int i = 0; i < n; ++i)
    if (labels[i] < 0 || labels[i] >= classes)
      throw Error(ErrorKind::kInvalidArgument,
                  "fine-tuning: label " + std::to_string(labels[i]) + " of item " +
                      std::to_string(i) + " is not one of " + std::to_string(classes) + " classes");
  const Block5Conv conv = config_.freeze_block5 ? Block5Conv::kDirect : config_.block5_conv;
  // Below 7 × 7 cells (224-px crops), pool5's map is smaller than the 25088 features the average
  // pool spreads it over: the head's first layer then runs on the map (2048 inputs at 64 px)
  // with the pool folded into its weights, 12× fewer multiplications, the same function.
  const int ph = h / 2, pw = w / 2;
  const bool compact = config_.compact_head && ph >= 1 && pw >= 1 && ph * pw < 49;
  FineTuneStats stats;
  const bool grouped = w1_grouped(compact, ph, pw);
  if (compact) {
    const std::vector<float> pool5 = block5_.forward_pool5(x, n, h, w, &act_, conv);
    if (!w1c_current_ || ph != cells_ph_ || pw != cells_pw_) fold_w1(ph, pw);
    const int d = kBlock5Channels * ph * pw;
    g_w1c_.resize(w1c_.size());
    head_forward_backward(pool5.data(), n, d, w1c_.data(), g_w1c_.data(), labels, step_key, &stats);
    if (grouped)
      group_w1_grad();
    else
      expand_w1_grad(ph, pw);
  } else {
    const std::vector<float> feat = block5_.forward(x, n, h, w, &act_, conv);  // throws on shapes
    head_forward_backward(feat.data(), n, head_.shape.dim, head_.w1.data(), params_[6].grad.data(),
                          labels, step_key, &stats);
  }
  if (!config_.freeze_block5) {
    Block5Gradients recycled;  // last step's gradient buffers, refilled
    for (int i = 0; i < 3; ++i) {
      recycled.weight[i] = std::move(params_[2 * i].grad);
      recycled.bias[i] = std::move(params_[2 * i + 1].grad);
    }
    Block5Gradients g = compact
                            ? block5_.backward_pool5(act_, d_feat_, nullptr, std::move(recycled))
                            : block5_.backward(act_, d_feat_, nullptr, std::move(recycled));
    for (int i = 0; i < 3; ++i) {
      params_[2 * i].grad = std::move(g.weight[i]);
      params_[2 * i + 1].grad = std::move(g.bias[i]);
    }
  }
  ++t_;
  update(grouped);
  return stats;
}

bool FineTuner::w1_grouped(bool compact, int ph, int pw) {
  if (w1g_.active && compact && w1g_.ph == ph && w1g_.pw == pw) return true;
  const bool per_weight_already = !params_[6].grad.empty();
  if (w1g_.active || per_weight_already || !compact || !config_.group_w1_state ||
      config_.weight_decay != 0) {
    ensure_w1_per_weight();  // weight decay adds each weight's own value to its gradient
    return false;
  }
  // The first step: outputs whose windows hold the same cells share a group.
  const std::vector<std::vector<int>> cells = block5_avgpool_cells(ph, pw);
  w1g_.of_output.assign(cells.size(), -1);
  w1g_.cells.clear();
  for (size_t o = 0; o < cells.size(); ++o) {
    const auto it = std::find(w1g_.cells.begin(), w1g_.cells.end(), cells[o]);
    w1g_.of_output[o] = static_cast<int>(it - w1g_.cells.begin());
    if (it == w1g_.cells.end()) w1g_.cells.push_back(cells[o]);
  }
  w1g_.count = static_cast<int>(w1g_.cells.size());
  w1g_.ph = ph;
  w1g_.pw = pw;
  const size_t n = static_cast<size_t>(head_.shape.hidden) * kBlock5Channels * w1g_.count;
  w1g_.grad.resize(n);
  w1g_.s1.assign(n, 0.0f);
  if (config_.optimizer == FineTuneOptimizer::kAdam) w1g_.s2.assign(n, 0.0f);
  w1g_.active = true;
  return true;
}

void FineTuner::ensure_w1_per_weight() {
  Param& p = params_[6];
  if (!p.grad.empty()) return;
  p.grad.resize(p.size);
  const bool adam = config_.optimizer == FineTuneOptimizer::kAdam;
  if (!w1g_.active) {
    p.s1.assign(p.size, 0.0f);
    if (adam) p.s2.assign(p.size, 0.0f);
    return;
  }
  // A later step of another shape: each weight takes its group's state.
  p.s1.resize(p.size);
  if (adam) p.s2.resize(p.size);
  const int outs = static_cast<int>(w1g_.of_output.size()), count = w1g_.count;
  const size_t rows = static_cast<size_t>(head_.shape.hidden) * kBlock5Channels;
  for (size_t rc = 0; rc < rows; ++rc)
    for (int o = 0; o < outs; ++o) {
      const size_t from = rc * count + w1g_.of_output[o], to = rc * outs + o;
      p.s1[to] = w1g_.s1[from];
      if (adam) p.s2[to] = w1g_.s2[from];
    }
  w1g_ = W1Groups();
}

void FineTuner::group_w1_grad() {
  // Each group's gradient as expand_w1_grad() computes each of its outputs'.
  const int hd = head_.shape.hidden, pp = w1g_.ph * w1g_.pw, dc = kBlock5Channels * pp;
  const int count = w1g_.count;
  tbb::parallel_for(0, hd, [&](int r) {
    const float* gc = g_w1c_.data() + static_cast<size_t>(r) * dc;
    float* out = w1g_.grad.data() + static_cast<size_t>(r) * kBlock5Channels * count;
    for (int c = 0; c < kBlock5Channels; ++c)
      for (int g = 0; g < count; ++g) {
        const std::vector<int>& cells = w1g_.cells[g];
        float sum = 0.0f;
        for (int p : cells) sum += gc[c * pp + p];
        out[c * count + g] = sum / static_cast<float>(cells.size());
      }
  });
}

void FineTuner::update_w1_grouped(const AdamStep& adam, const SgdStep& sgd) {
  const int hd = head_.shape.hidden, count = w1g_.count, outs = kBlock5OutputDim / kBlock5Channels;
  const int pp = cells_ph_ * cells_pw_, dc = kBlock5Channels * pp;
  const size_t per_row = static_cast<size_t>(kBlock5Channels) * count;
  const bool is_adam = config_.optimizer == FineTuneOptimizer::kAdam;
  tbb::parallel_for(0, hd, [&](int r) {
    // The update of each group, as adam_update()/sgd_update() compute it for a weight of 0: the
    // step to add to every weight of the group (p + (0 − s) is p − s exactly).
    thread_local std::vector<float> step;
    step.assign(per_row, 0.0f);
    const size_t g0 = static_cast<size_t>(r) * per_row;
    if (is_adam)
      adam_update(step.data(), w1g_.s1.data() + g0, w1g_.s2.data() + g0, w1g_.grad.data() + g0,
                  per_row, adam);
    else
      sgd_update(step.data(), w1g_.s1.data() + g0, w1g_.grad.data() + g0, per_row, sgd);
    float* w = head_.w1.data() + static_cast<size_t>(r) * kBlock5OutputDim;
    float* folded = w1c_.data() + static_cast<size_t>(r) * dc;
    for (int c = 0; c < kBlock5Channels; ++c) {
      float* wc = w + c * outs;
      const float* sc = step.data() + static_cast<size_t>(c) * count;
      for (int o = 0; o < outs; ++o) wc[o] += sc[w1g_.of_output[o]];
      for (int p = 0; p < pp; ++p) {  // fold_w1()'s sum, on the updated row
        float sum = 0.0f;
        for (const auto& [o, share] : cell_outputs_[p]) sum += wc[o] * share;
        folded[c * pp + p] = sum;
      }
    }
  });
}

void FineTuner::fold_w1(int ph, int pw) {
  if (ph != cells_ph_ || pw != cells_pw_) {
    const std::vector<std::vector<int>> cells = block5_avgpool_cells(ph, pw);
    cell_outputs_.assign(static_cast<size_t>(ph) * pw, {});
    for (size_t o = 0; o < cells.size(); ++o)
      for (int p : cells[o])
        cell_outputs_[p].push_back(
            {static_cast<int>(o), 1.0f / static_cast<float>(cells[o].size())});
    cells_ph_ = ph;
    cells_pw_ = pw;
  }
  const int hd = head_.shape.hidden, pp = ph * pw, dc = kBlock5Channels * pp;
  const int full = head_.shape.dim;  // 512 · 49
  w1c_.resize(static_cast<size_t>(hd) * dc);
  tbb::parallel_for(0, hd, [&](int r) {
    const float* w = head_.w1.data() + static_cast<size_t>(r) * full;
    float* out = w1c_.data() + static_cast<size_t>(r) * dc;
    for (int c = 0; c < kBlock5Channels; ++c)
      for (int p = 0; p < pp; ++p) {
        float sum = 0.0f;
        for (const auto& [o, share] : cell_outputs_[p]) sum += w[c * 49 + o] * share;
        out[c * pp + p] = sum;
      }
  });
}

void FineTuner::expand_w1_grad(int ph, int pw) {
  const int hd = head_.shape.hidden, pp = ph * pw, dc = kBlock5Channels * pp;
  const int full = head_.shape.dim;
  const std::vector<std::vector<int>> cells = block5_avgpool_cells(ph, pw);
  float* g = params_[6].grad.data();
  tbb::parallel_for(0, hd, [&](int r) {
    const float* gc = g_w1c_.data() + static_cast<size_t>(r) * dc;
    float* out = g + static_cast<size_t>(r) * full;
    for (int c = 0; c < kBlock5Channels; ++c)
      for (int o = 0; o < 49; ++o) {
        float sum = 0.0f;
        for (int p : cells[o]) sum += gc[c * pp + p];
        out[c * 49 + o] = sum / static_cast<float>(cells[o].size());
      }
  });
}

void FineTuner::head_forward_backward(const float* feat, int n, int d, const float* w1, float* g_w1,
                                      const int32_t* labels, uint64_t step_key,
                                      FineTuneStats* stats) {
  const int hd = head_.shape.hidden, o = head_.shape.outputs();
  const size_t nh = static_cast<size_t>(n) * hd;
  h_.resize(nh);
  keep_.resize(nh);
  a_.resize(nh);
  dh_.resize(nh);
  z_.resize(static_cast<size_t>(n) * o);
  dz_.resize(z_.size());

  linear_forward(feat, n, d, w1, head_.b1.data(), hd, h_.data());
  relu_dropout(h_.data(), nh, static_cast<float>(config_.dropout), config_.seed, step_key,
               keep_.data(), a_.data());
  linear_forward(a_.data(), n, hd, head_.w2.data(), head_.b2.data(), o, z_.data());
  const LossAndCorrect lc =
      loss_and_correct(z_.data(), labels, n, o, dz_.data(),
                       config_.class_weight.empty() ? nullptr : config_.class_weight.data());
  stats->loss = lc.loss;
  stats->correct = lc.correct;

  // Second layer: ∂W2 (o × hidden) = dzᵀ · a, ∂b2 = Σ_rows dz, ∂a (n × hidden) = dz · W2.
  sgemm(true, false, o, hd, n, 1.0f, dz_.data(), o, a_.data(), hd, 0.0f, params_[8].grad.data(),
        hd);
  column_sums(dz_.data(), n, o, params_[9].grad.data());
  sgemm(false, false, n, hd, o, 1.0f, dz_.data(), o, head_.w2.data(), hd, 0.0f, dh_.data(), hd);
  for (size_t i = 0; i < nh; ++i) dh_[i] *= keep_[i];
  column_sums(dh_.data(), n, hd, params_[7].grad.data());

  // First layer, split over fixed column blocks of dim: ∂W1 (hidden × dim) = dhᵀ · feat and, for
  // block 5, ∂feat (n × dim) = dh · W1 with the W1 of this forward pass (updates come after).
  const bool need_dfeat = !config_.freeze_block5;
  if (need_dfeat) d_feat_.resize(static_cast<size_t>(n) * d);
  const int blocks = (d + kBlockCols - 1) / kBlockCols;
  tbb::parallel_for(
      tbb::blocked_range<int>(0, blocks, 1),
      [&](const tbb::blocked_range<int>& r) {
        for (int b = r.begin(); b != r.end(); ++b) {
          const int c0 = b * kBlockCols, cw = std::min(kBlockCols, d - c0);
          sgemm(true, false, hd, cw, n, 1.0f, dh_.data(), hd, feat + c0, d, 0.0f, g_w1 + c0, d);
          if (need_dfeat)
            sgemm(false, false, n, cw, hd, 1.0f, dh_.data(), hd, w1 + c0, d, 0.0f,
                  d_feat_.data() + c0, d);
        }
      },
      tbb::simple_partitioner());
}

void FineTuner::update(bool w1_grouped) {
  const FineTuneConfig& c = config_;
  const bool adam = c.optimizer == FineTuneOptimizer::kAdam;
  AdamConfig ac;
  ac.beta1 = c.beta1;
  ac.beta2 = c.beta2;
  ac.eps = c.eps;
  ac.weight_decay = c.weight_decay;
  ac.lr = c.lr;
  const AdamStep adam_head = adam_step(ac, t_);
  ac.lr = c.lr_block5;
  const AdamStep adam_block5 = adam_step(ac, t_);
  SgdStep sgd_head{static_cast<float>(c.lr), static_cast<float>(c.momentum),
                   static_cast<float>(c.weight_decay), t_ == 1};
  SgdStep sgd_block5 = sgd_head;
  sgd_block5.lr = static_cast<float>(c.lr_block5);

  w1c_current_ = false;
  if (w1_grouped) {
    update_w1_grouped(adam_head, sgd_head);
    w1c_current_ = true;
  }
  for (size_t k = 0; k < params_.size(); ++k) {
    Param& p = params_[k];
    if ((p.block5 && c.freeze_block5) || (k == 6 && w1_grouped)) continue;
    const size_t chunks = (p.size + kUpdateChunk - 1) / kUpdateChunk;
    tbb::parallel_for(size_t{0}, chunks, [&](size_t k) {
      const size_t i0 = k * kUpdateChunk, len = std::min(kUpdateChunk, p.size - i0);
      if (adam)
        adam_update(p.p + i0, p.s1.data() + i0, p.s2.data() + i0, p.grad.data() + i0, len,
                    p.block5 ? adam_block5 : adam_head);
      else
        sgd_update(p.p + i0, p.s1.data() + i0, p.grad.data() + i0, len,
                   p.block5 ? sgd_block5 : sgd_head);
    });
  }
}

}  // namespace vggcache
