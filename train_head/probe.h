// The linear probe trained by full-batch L-BFGS (`train_head --hidden 0 --optimizer lbfgs`):
// multinomial logistic regression on the training vectors, minimising
//
//   f(W, b) = Σ_i w_i · loss_i + (l2 / 2) · ‖W‖²
//
// loss_i: sigmoid + binary cross-entropy on one logit for two classes, softmax cross-entropy on
// one logit per class otherwise (the head's output layer; computed with log1p/log-sum-exp, not
// torch's log clamp, so f is smooth); w_i: the class weight of sample i (--class-weight
// balanced), else 1; the bias b is not penalised. This is scikit-learn's
// LogisticRegression(C = 1 / l2) objective times l2, hence the same minimiser (sklearn minimises
// C · Σ w_i·loss_i + ½‖W‖²).
//
// Products with the training matrix X (n × d) run in fixed blocks (rows for X·Wᵀ, columns for
// dZᵀ·X, each block one single-threaded GEMM), and the loss is summed in row order, so the
// objective, hence the L-BFGS path, is the same for any --threads.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "train_head/lbfgs.h"
#include "train_head/trainer.h"

namespace vggcache {

// The training matrix X (rows × cols) and the two products the objective needs.
class ProbeMatrix {
 public:
  virtual ~ProbeMatrix() = default;
  virtual int rows() const = 0;
  virtual int cols() const = 0;
  // z (rows × o) = X · wᵀ for w (o × cols); row-major.
  virtual void times_transposed(const double* w, int o, double* z) const = 0;
  // g (o × cols) = dzᵀ · X for dz (rows × o).
  virtual void transposed_times(const double* dz, int o, double* g) const = 0;
};

// float32 X (what training uses): sgemm in float on fixed blocks, results in double.
class FloatProbeMatrix : public ProbeMatrix {
 public:
  FloatProbeMatrix(std::vector<float> x, int rows, int cols);
  int rows() const override { return rows_; }
  int cols() const override { return cols_; }
  void times_transposed(const double* w, int o, double* z) const override;
  void transposed_times(const double* dz, int o, double* g) const override;

 private:
  std::vector<float> x_;
  int rows_, cols_;
};

// float64 X (tests: the objective exact enough for finite differences).
class DoubleProbeMatrix : public ProbeMatrix {
 public:
  DoubleProbeMatrix(std::vector<double> x, int rows, int cols);
  int rows() const override { return rows_; }
  int cols() const override { return cols_; }
  void times_transposed(const double* w, int o, double* z) const override;
  void transposed_times(const double* dz, int o, double* g) const override;

 private:
  std::vector<double> x_;
  int rows_, cols_;
};

struct ProbeProblem {
  const ProbeMatrix* x = nullptr;
  std::vector<int32_t> labels;  // rows, in [0, classes)
  std::vector<double> weights;  // rows (the class weight of each row's label), or empty: all 1
  int classes = 2;              // 2: one logit (sigmoid); more: one per class (softmax)
  double l2 = 1.0;
  int outputs() const { return classes == 2 ? 1 : classes; }
  // θ = [W (outputs × cols, row-major), b (outputs)].
  size_t params() const { return static_cast<size_t>(outputs()) * (x->cols() + 1); }
};

struct ProbeValue {
  double objective = 0.0;
  double loss = 0.0;  // Σ w_i · loss_i / Σ w_i: the data term's weighted mean
  int64_t correct = 0;
};

// f(θ) and ∇f(θ) (into *grad when non-null).
double probe_objective(const ProbeProblem& p, const std::vector<double>& theta,
                       std::vector<double>* grad, ProbeValue* value = nullptr);

struct ProbeIteration {
  LbfgsIteration lbfgs;
  double seconds = 0.0;  // since the vectors were read (reading included)
  int64_t rows = 0;      // training vectors: each evaluation reads them all
};

// Trains a probe (params.hidden 0, optimizer "lbfgs") on one vector per training image (the crop
// Adam's first epoch draws for it), or on every crop with --all-crops, read from setup.train
// (standardised by setup.standardizer) into memory. From compact sources (window means of a
// prepool-f32 cache; the map form is refused) the columns are scaled by √(cells of their
// window): the full-width problem's minimiser repeats one column per window, and in those
// scaled coordinates both its products and its ‖W‖² are the full-width ones, so the solution is
// the full-width probe's (head.bin holds the 25088 columns). Starts from W = 0, b = 0 (as
// scikit-learn does): no --seed dependence but the crop choice. The outcome has one "epoch"
// (validation and test evaluated once) and `solver` (iterations, evaluations, objective,
// gradient norm, stop reason).
TrainOutcome train_probe_lbfgs(const TrainParams& params, TrainSetup& setup,
                               const std::function<void(const ProbeIteration&)>& on_iteration);

}  // namespace vggcache
