#include "train_head/train_step.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <Eigen/Core>
#include <algorithm>

#include "common/error.h"
#include "head/head_step_parts.h"
#include "head/linalg.h"

namespace vggcache {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMap = Eigen::Map<RowMat>;
using CRowMap = Eigen::Map<const RowMat>;

// Columns per W1 block. Measured on the 2-core dev box (dim 25088, hidden 256, batch 100): 1024
// keeps a block's gradient (1 MiB) in L2 and gives 25 blocks to balance over the threads.
constexpr int kBlockCols = 1024;

// Copies W1 between nn.Linear's layout (hidden × dim) and the blocked one.
void reblock(const float* from, float* to, int hidden, int dim, bool to_blocked) {
  const int blocks = (dim + kBlockCols - 1) / kBlockCols;
  tbb::parallel_for(0, blocks, [&](int b) {
    const int c0 = b * kBlockCols, cw = std::min(kBlockCols, dim - c0);
    const size_t base = static_cast<size_t>(c0) * hidden;  // blocks before b are full
    for (int j = 0; j < hidden; ++j) {
      const size_t plain = static_cast<size_t>(j) * dim + c0, blocked = base + size_t(j) * cw;
      if (to_blocked)
        std::copy_n(from + plain, cw, to + blocked);
      else
        std::copy_n(from + blocked, cw, to + plain);
    }
  });
}

}  // namespace

HeadOptimizer::HeadOptimizer(HeadWeights init, const AdamConfig& adam, double dropout,
                             uint64_t seed)
    : HeadOptimizer(std::move(init), adam, dropout, seed, /*dense_w1=*/true) {}

HeadOptimizer::HeadOptimizer(HeadWeights init, const AdamConfig& adam, double dropout,
                             uint64_t seed, bool dense_w1)
    : w_(std::move(init)), adam_(adam), dropout_(static_cast<float>(dropout)), seed_(seed) {
  const int d = w_.shape.dim, hd = w_.shape.rows1();
  if (dense_w1) {
    blocks_ = (d + kBlockCols - 1) / kBlockCols;
    w1_blocked_.resize(w_.w1.size());
    reblock(w_.w1.data(), w1_blocked_.data(), hd, d, true);
    m_w1_.assign(w_.w1.size(), 0.0f);
    v_w1_.assign(w_.w1.size(), 0.0f);
  }
  m_b1_.assign(w_.b1.size(), 0.0f);
  v_b1_.assign(w_.b1.size(), 0.0f);
  m_w2_.assign(w_.w2.size(), 0.0f);
  v_w2_.assign(w_.w2.size(), 0.0f);
  m_b2_.assign(w_.b2.size(), 0.0f);
  v_b2_.assign(w_.b2.size(), 0.0f);
}

const HeadWeights& HeadOptimizer::weights() {
  check_not_spent("weights");
  if (w1_stale_ || w_.w1.empty()) {
    refresh_w1();
    w1_stale_ = false;
  }
  return w_;
}

void HeadOptimizer::w1_from_state(const float* state, float* w1) const {
  reblock(state, w1, w_.shape.rows1(), w_.shape.dim, false);
}

void HeadOptimizer::refresh_w1() {
  w_.w1.resize(static_cast<size_t>(w_.shape.rows1()) * w_.shape.dim);
  w1_from_state(w1_state().data(), w_.w1.data());
}

void HeadOptimizer::check_not_spent(const char* what) const {
  if (spent_)
    throw Error(ErrorKind::kInvalidArgument,
                std::string(what) + ": the optimizer gave its weights away (take_kept_weights)");
}

void HeadOptimizer::keep() {
  check_not_spent("keep");
  kept_w1_state_ = w1_state();  // copy-assignment: the buffers are reused from the last keep()
  kept_b1_ = w_.b1;
  kept_w2_ = w_.w2;
  kept_b2_ = w_.b2;
  has_kept_ = true;
}

std::vector<float> HeadOptimizer::release_w1(const float* state) {
  std::vector<float> w1 = std::move(w_.w1);
  w1.resize(static_cast<size_t>(w_.shape.rows1()) * w_.shape.dim);
  w1_from_state(state, w1.data());
  return w1;
}

HeadWeights HeadOptimizer::take_kept_weights() {
  check_not_spent("take_kept_weights");
  if (!has_kept_) throw Error(ErrorKind::kInvalidArgument, "take_kept_weights: nothing was kept");
  HeadWeights w;
  w.shape = w_.shape;
  w.w1 = release_w1(kept_w1_state_.data());
  w.b1 = std::move(kept_b1_);
  w.w2 = std::move(kept_w2_);
  w.b2 = std::move(kept_b2_);
  spent_ = true;
  return w;
}

void HeadOptimizer::forward_first_layer(const float* x, int n) {
  const int d = w_.shape.dim, hd = w_.shape.rows1();
  const size_t cells = static_cast<size_t>(n) * hd;
  partial_.resize(cells * blocks_);
  tbb::parallel_for(
      tbb::blocked_range<int>(0, blocks_, 1),
      [&](const tbb::blocked_range<int>& r) {
        for (int b = r.begin(); b != r.end(); ++b) {
          const int c0 = b * kBlockCols, cw = std::min(kBlockCols, d - c0);
          // partial_b (n × hidden) = x[:, c0:c0+cw] (n × cw) · W1_bᵀ (cw × hidden)
          sgemm(false, true, n, hd, cw, 1.0f, x + c0, d,
                w1_blocked_.data() + static_cast<size_t>(c0) * hd, cw, 0.0f,
                partial_.data() + b * cells, hd);
        }
      },
      tbb::simple_partitioner());
  // h = b1 + Σ_b partial_b, in block order whatever the thread count.
  tbb::parallel_for(tbb::blocked_range<size_t>(0, cells, 2048),
                    [&](const tbb::blocked_range<size_t>& r) {
                      for (size_t i = r.begin(); i != r.end(); ++i) {
                        float s = w_.b1[i % hd];
                        for (int b = 0; b < blocks_; ++b) s += partial_[b * cells + i];
                        h_[i] = s;
                      }
                    });
}

void HeadOptimizer::backward_first_layer_and_adam(const float* x, int n, const AdamStep& s) {
  const int d = w_.shape.dim, hd = w_.shape.rows1();
  tbb::parallel_for(
      tbb::blocked_range<int>(0, blocks_, 1),
      [&](const tbb::blocked_range<int>& r) {
        std::vector<float>& g = grad_blocks_.local();
        g.resize(static_cast<size_t>(hd) * kBlockCols);
        for (int b = r.begin(); b != r.end(); ++b) {
          const int c0 = b * kBlockCols, cw = std::min(kBlockCols, d - c0);
          // g (hidden × cw) = dhᵀ (hidden × n) · x[:, c0:c0+cw] (n × cw); K = n, so the sums do
          // not depend on the thread count either.
          sgemm(true, false, hd, cw, n, 1.0f, dh_.data(), hd, x + c0, d, 0.0f, g.data(), cw);
          const size_t off = static_cast<size_t>(c0) * hd;
          adam_update(w1_blocked_.data() + off, m_w1_.data() + off, v_w1_.data() + off, g.data(),
                      static_cast<size_t>(hd) * cw, s);
        }
      },
      tbb::simple_partitioner());
  w1_stale_ = true;
}

StepStats HeadOptimizer::probe_step(const float* x, const int32_t* labels, int n) {
  const int o = w_.shape.outputs();
  h_.resize(static_cast<size_t>(n) * o);
  dh_.resize(h_.size());
  // The first layer's output is the logits; its gradient goes where the hidden layer's would, so
  // the blocked GEMM + fused Adam pass (or the compact one) serves the probe unchanged.
  forward_first_layer(x, n);
  const LossAndCorrect lc = loss_and_correct(
      h_.data(), labels, n, o, dh_.data(), class_weight_.empty() ? nullptr : class_weight_.data());
  g_b1_.resize(o);
  Eigen::Map<Eigen::RowVectorXf>(g_b1_.data(), o) = CRowMap(dh_.data(), n, o).colwise().sum();
  ++t_;
  const AdamStep s = adam_step(adam_, t_);
  backward_first_layer_and_adam(x, n, s);
  adam_update(w_.b1.data(), m_b1_.data(), v_b1_.data(), g_b1_.data(), g_b1_.size(), s);
  StepStats st;
  st.loss = lc.loss;
  st.correct = lc.correct;
  return st;
}

StepStats HeadOptimizer::step(const float* x, const int32_t* labels, int n, uint64_t step_key) {
  check_not_spent("step");
  if (w_.shape.probe()) return probe_step(x, labels, n);  // no hidden layer, hence no dropout
  const int hd = w_.shape.hidden, o = w_.shape.outputs();
  const size_t nh = static_cast<size_t>(n) * hd;
  h_.resize(nh);
  a_.resize(nh);
  keep_.resize(nh);
  dh_.resize(nh);
  z_.resize(static_cast<size_t>(n) * o);
  dz_.resize(z_.size());

  // Forward. h = x · W1ᵀ + b1 (n × hidden), the hot GEMM.
  forward_first_layer(x, n);
  // a = dropout(relu(h)); keep holds the combined ReLU/dropout factor for the backward pass.
  relu_dropout(h_.data(), nh, dropout_, seed_, step_key, keep_.data(), a_.data());
  CRowMap a(a_.data(), n, hd);
  CRowMap w2(w_.w2.data(), o, hd);
  RowMap z(z_.data(), n, o);
  z.noalias() = a * w2.transpose();
  z.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(w_.b2.data(), o);

  // Loss and ∂loss/∂z (n × outputs).
  const LossAndCorrect lc = loss_and_correct(
      z_.data(), labels, n, o, dz_.data(), class_weight_.empty() ? nullptr : class_weight_.data());
  StepStats st;
  st.loss = lc.loss;
  st.correct = lc.correct;

  // Backward through the second layer and the activations (small: n × hidden).
  CRowMap dz(dz_.data(), n, o);
  g_w2_.resize(w_.w2.size());
  g_b2_.resize(o);
  g_b1_.resize(hd);
  RowMap(g_w2_.data(), o, hd).noalias() = dz.transpose() * a;
  Eigen::Map<Eigen::RowVectorXf>(g_b2_.data(), o) = dz.colwise().sum();
  RowMap dh(dh_.data(), n, hd);
  dh.noalias() = dz * w2;  // ∂loss/∂a
  dh.array() *= CRowMap(keep_.data(), n, hd).array();
  Eigen::Map<Eigen::RowVectorXf>(g_b1_.data(), hd) = dh.colwise().sum();

  ++t_;
  const AdamStep s = adam_step(adam_, t_);
  backward_first_layer_and_adam(x, n, s);
  adam_update(w_.b1.data(), m_b1_.data(), v_b1_.data(), g_b1_.data(), g_b1_.size(), s);
  adam_update(w_.w2.data(), m_w2_.data(), v_w2_.data(), g_w2_.data(), g_w2_.size(), s);
  adam_update(w_.b2.data(), m_b2_.data(), v_b2_.data(), g_b2_.data(), g_b2_.size(), s);
  return st;
}

}  // namespace vggcache
