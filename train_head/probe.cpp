#include "train_head/probe.h"

#include <fmt/format.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/error.h"
#include "common/progress.h"  // seconds_since
#include "head/compact_layout.h"
#include "head/linalg.h"
#include "train_head/batch_schedule.h"
#include "train_head/imbalance.h"

namespace vggcache {

namespace {

// Fixed block sizes (never derived from the thread count): rows per X·Wᵀ block, columns per
// dZᵀ·X block. Each block is one GEMM whose summation order depends only on its shape.
constexpr int kRowBlock = 256;
constexpr int kColBlock = 512;

using RowMatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// log(1 + e^t) without overflow or loss of precision.
double softplus(double t) {
  return t > 0.0 ? t + std::log1p(std::exp(-t)) : std::log1p(std::exp(t));
}

}  // namespace

FloatProbeMatrix::FloatProbeMatrix(std::vector<float> x, int rows, int cols)
    : x_(std::move(x)), rows_(rows), cols_(cols) {
  if (rows < 1 || cols < 1 || x_.size() != static_cast<size_t>(rows) * cols)
    throw Error(ErrorKind::kInvalidArgument, "probe matrix: size != rows × cols");
}

void FloatProbeMatrix::times_transposed(const double* w, int o, double* z) const {
  std::vector<float> wf(w, w + static_cast<size_t>(o) * cols_);
  std::vector<float> zf(static_cast<size_t>(rows_) * o);
  const int blocks = (rows_ + kRowBlock - 1) / kRowBlock;
  tbb::parallel_for(
      tbb::blocked_range<int>(0, blocks, 1),
      [&](const tbb::blocked_range<int>& r) {
        for (int b = r.begin(); b != r.end(); ++b) {
          const int r0 = b * kRowBlock, rn = std::min(kRowBlock, rows_ - r0);
          sgemm(false, true, rn, o, cols_, 1.0f, x_.data() + static_cast<size_t>(r0) * cols_, cols_,
                wf.data(), cols_, 0.0f, zf.data() + static_cast<size_t>(r0) * o, o);
        }
      },
      tbb::simple_partitioner());
  std::copy(zf.begin(), zf.end(), z);
}

void FloatProbeMatrix::transposed_times(const double* dz, int o, double* g) const {
  std::vector<float> dzf(dz, dz + static_cast<size_t>(rows_) * o);
  std::vector<float> gf(static_cast<size_t>(o) * cols_);
  const int blocks = (cols_ + kColBlock - 1) / kColBlock;
  tbb::parallel_for(
      tbb::blocked_range<int>(0, blocks, 1),
      [&](const tbb::blocked_range<int>& r) {
        for (int b = r.begin(); b != r.end(); ++b) {
          const int c0 = b * kColBlock, cn = std::min(kColBlock, cols_ - c0);
          // g[:, c0:c0+cn] (o × cn) = dzᵀ (o × rows) · X[:, c0:c0+cn]; the sum over rows is
          // inside one GEMM, a fixed order.
          sgemm(true, false, o, cn, rows_, 1.0f, dzf.data(), o, x_.data() + c0, cols_, 0.0f,
                gf.data() + c0, cols_);
        }
      },
      tbb::simple_partitioner());
  std::copy(gf.begin(), gf.end(), g);
}

DoubleProbeMatrix::DoubleProbeMatrix(std::vector<double> x, int rows, int cols)
    : x_(std::move(x)), rows_(rows), cols_(cols) {
  if (rows < 1 || cols < 1 || x_.size() != static_cast<size_t>(rows) * cols)
    throw Error(ErrorKind::kInvalidArgument, "probe matrix: size != rows × cols");
}

void DoubleProbeMatrix::times_transposed(const double* w, int o, double* z) const {
  Eigen::Map<const RowMatD> x(x_.data(), rows_, cols_), wm(w, o, cols_);
  Eigen::Map<RowMatD>(z, rows_, o).noalias() = x * wm.transpose();
}

void DoubleProbeMatrix::transposed_times(const double* dz, int o, double* g) const {
  Eigen::Map<const RowMatD> x(x_.data(), rows_, cols_), d(dz, rows_, o);
  Eigen::Map<RowMatD>(g, o, cols_).noalias() = d.transpose() * x;
}

double probe_objective(const ProbeProblem& p, const std::vector<double>& theta,
                       std::vector<double>* grad, ProbeValue* value) {
  const int n = p.x->rows(), d = p.x->cols(), o = p.outputs();
  const size_t wsize = static_cast<size_t>(o) * d;
  if (theta.size() != p.params() || p.labels.size() != static_cast<size_t>(n) ||
      (!p.weights.empty() && p.weights.size() != static_cast<size_t>(n)))
    throw Error(ErrorKind::kInvalidArgument, "probe objective: sizes disagree");
  const double* w = theta.data();
  const double* b = theta.data() + wsize;
  std::vector<double> z(static_cast<size_t>(n) * o);
  p.x->times_transposed(w, o, z.data());
  std::vector<double> dz(z.size());
  double data = 0.0, weight_sum = 0.0;
  int64_t correct = 0;
  // Row order, one thread: the sum is the same for any --threads (n logits are cheap next to
  // the products).
  for (int i = 0; i < n; ++i) {
    const double wi = p.weights.empty() ? 1.0 : p.weights[i];
    const int32_t y = p.labels[i];
    double* zi = z.data() + static_cast<size_t>(i) * o;
    double* di = dz.data() + static_cast<size_t>(i) * o;
    for (int k = 0; k < o; ++k) zi[k] += b[k];
    if (o == 1) {
      // −log σ(z) = softplus(−z), −log(1 − σ(z)) = softplus(z).
      data += wi * (y == 1 ? softplus(-zi[0]) : softplus(zi[0]));
      const double prob = 1.0 / (1.0 + std::exp(-zi[0]));
      di[0] = wi * (prob - (y == 1 ? 1.0 : 0.0));
      correct += (zi[0] > 0.0 ? 1 : 0) == y;
    } else {
      int best = 0;
      for (int k = 1; k < o; ++k)
        if (zi[k] > zi[best]) best = k;
      const double mx = zi[best];
      double sum = 0.0;
      for (int k = 0; k < o; ++k) sum += std::exp(zi[k] - mx);
      const double lse = mx + std::log(sum);
      data += wi * (lse - zi[y]);
      for (int k = 0; k < o; ++k) di[k] = wi * (std::exp(zi[k] - lse) - (k == y ? 1.0 : 0.0));
      correct += best == y;
    }
    weight_sum += wi;
  }
  double penalty = 0.0;
  for (size_t j = 0; j < wsize; ++j) penalty += w[j] * w[j];
  const double f = data + 0.5 * p.l2 * penalty;
  if (grad) {
    grad->assign(theta.size(), 0.0);
    p.x->transposed_times(dz.data(), o, grad->data());
    for (size_t j = 0; j < wsize; ++j) (*grad)[j] += p.l2 * w[j];
    for (int i = 0; i < n; ++i)  // ∂f/∂b = Σ_i dz_i, not penalised
      for (int k = 0; k < o; ++k) (*grad)[wsize + k] += dz[static_cast<size_t>(i) * o + k];
  }
  if (value) {
    value->objective = f;
    value->loss = weight_sum > 0.0 ? data / weight_sum : 0.0;
    value->correct = correct;
  }
  return f;
}

TrainOutcome train_probe_lbfgs(const TrainParams& params, TrainSetup& setup,
                               const std::function<void(const ProbeIteration&)>& on_iteration) {
  FeatureSource& train = *setup.train;
  const CompactLayout* layout = train.compact();
  if (layout && layout->input() != CompactInput::kWindowMeans)
    throw Error(ErrorKind::kInvalidArgument,
                "L-BFGS probe: compact vectors must be window means, not the map");
  const HeadShape shape = setup.init.shape;
  if (!shape.probe())
    throw Error(ErrorKind::kInvalidArgument, "L-BFGS trains a probe only (hidden 0)");
  const auto t0 = std::chrono::steady_clock::now();

  // The vectors: Adam's first-epoch crop per image, or every crop; sorted so that the rows do not
  // depend on the shuffle.
  std::vector<Item> items =
      epoch_items(setup.train_images, train.crops(), params.all_crops, params.seed, 0);
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.image != b.image ? a.image < b.image : a.crop < b.crop;
  });
  const int n = static_cast<int>(items.size()), d = train.dim();
  if (n < 1) throw Error(ErrorKind::kInvalidArgument, "L-BFGS probe: no training vectors");
  std::vector<float> x(static_cast<size_t>(n) * d);
  train.gather(items.data(), n, setup.standardizer, x.data());
  // Compact: column c·K + k scaled by √cells(k) (see the header).
  std::vector<float> scale;
  if (layout) {
    scale.resize(d);
    for (int c = 0; c < layout->channels(); ++c)
      for (int k = 0; k < layout->windows(); ++k)
        scale[static_cast<size_t>(c) * layout->windows() + k] =
            std::sqrt(static_cast<float>(layout->cells(k)));
    tbb::parallel_for(0, n, [&](int i) {
      float* row = x.data() + static_cast<size_t>(i) * d;
      for (int j = 0; j < d; ++j) row[j] *= scale[j];
    });
  }
  FloatProbeMatrix matrix(std::move(x), n, d);
  ProbeProblem prob;
  prob.x = &matrix;
  prob.classes = shape.classes;
  prob.l2 = params.l2;
  prob.labels.resize(n);
  for (int i = 0; i < n; ++i) prob.labels[i] = train.label(items[i].image);
  TrainOutcome out;
  if (params.class_weight == "balanced") {
    std::vector<int32_t> image_labels(setup.train_images.size());
    for (size_t i = 0; i < image_labels.size(); ++i)
      image_labels[i] = train.label(setup.train_images[i]);
    out.class_weights = balanced_class_weights(image_labels, shape.classes);
    prob.weights.resize(n);
    for (int i = 0; i < n; ++i) prob.weights[i] = out.class_weights[prob.labels[i]];
  }
  double weight_sum = 0.0;
  for (int i = 0; i < n; ++i) weight_sum += prob.weights.empty() ? 1.0 : prob.weights[i];

  LbfgsOptions opt;
  opt.max_iter = params.max_iter;
  opt.tol = params.tol;
  opt.grad_scale = weight_sum;  // tol applies to the gradient of f / Σ w_i
  const LbfgsResult r =
      minimize_lbfgs([&](const std::vector<double>& theta,
                         std::vector<double>* g) { return probe_objective(prob, theta, g); },
                     std::vector<double>(prob.params(), 0.0), opt,
                     [&](const LbfgsIteration& it) {
                       if (on_iteration) on_iteration({it, seconds_since(t0), n});
                     });
  ProbeValue value;
  probe_objective(prob, r.x, nullptr, &value);
  out.train_seconds = seconds_since(t0);
  out.train_vectors = n;

  // The heads: over the source's vectors (evaluation) and over the full-width vectors (head.bin).
  const int o = shape.outputs();
  HeadWeights full;
  full.shape = shape;
  full.b1.assign(r.x.begin() + static_cast<size_t>(o) * d, r.x.end());
  HeadWeights eval;
  if (layout) {
    // Window column V_k: the source's window mean m_k gets V_k·√cells(k); each of the window's
    // cells in the pooled vector gets V_k / √cells(k) (Σ over its cells gives the same logit).
    std::vector<float> u(static_cast<size_t>(o) * d);
    eval.shape = shape;
    eval.shape.dim = d;
    eval.w1.resize(u.size());
    for (int k = 0; k < o; ++k)
      for (int j = 0; j < d; ++j) {
        const double v = r.x[static_cast<size_t>(k) * d + j];
        eval.w1[static_cast<size_t>(k) * d + j] = static_cast<float>(v * scale[j]);
        u[static_cast<size_t>(k) * d + j] = static_cast<float>(v / scale[j]);
      }
    eval.b1 = full.b1;
    full.w1.resize(static_cast<size_t>(o) * layout->full_dim());
    layout->expand_columns(u.data(), d, o, layout->channels(), nullptr, full.w1.data(),
                           layout->full_dim());
  } else {
    full.w1.assign(r.x.begin(), r.x.begin() + static_cast<size_t>(o) * d);
  }
  if (full.shape.dim != static_cast<int>(full.w1.size() / o))
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("L-BFGS probe: head dim {} but {} columns solved", full.shape.dim,
                            full.w1.size() / o));
  const HeadWeights& eval_w = layout ? eval : full;

  auto t1 = std::chrono::steady_clock::now();
  EpochMetrics m;
  m.epoch = 1;
  m.vectors = n;
  m.train_loss = value.loss;
  m.train_accuracy = static_cast<double>(value.correct) / n;
  m.train_seconds = out.train_seconds;
  FeatureSource* val_src = setup.val ? setup.val : setup.train;
  if (!setup.val_images.empty()) {
    const EvalResult v = evaluate_head(eval_w, *val_src, setup.val_images, setup.standardizer);
    m.has_val = true;
    m.val_loss = v.loss;
    m.val_accuracy = v.accuracy;
    m.val_balanced_accuracy = balanced_accuracy(v.confusion);
  }
  out.final_test = evaluate_head(eval_w, *setup.test, setup.test->images(), setup.standardizer);
  m.test_loss = out.final_test.loss;
  m.test_accuracy = out.final_test.accuracy;
  m.seconds = m.train_seconds + seconds_since(t1);
  out.epochs.push_back(m);
  out.selected_epoch = 1;
  out.selection = "final";  // one solution: nothing to select between
  out.selected_test = out.final_test;
  if (setup.keep_final_weights) out.final_weights = full;
  out.selected_weights = std::move(full);
  out.solver = {{"optimizer", "lbfgs"},
                {"iterations", r.iterations},
                {"evaluations", r.evaluations},
                {"objective", r.f},
                {"gradient_inf_norm", r.grad_inf},
                {"converged", r.converged},
                {"stop", r.stop},
                {"l2", params.l2},
                {"max_iter", params.max_iter},
                {"tol", params.tol},
                {"train_vectors", n},
                {"columns", d}};
  return out;
}

}  // namespace vggcache
