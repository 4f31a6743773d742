// Full-batch L-BFGS (Nocedal & Wright, Numerical Optimization, 2nd ed., algorithms 7.4 and 7.5)
// with a line search satisfying the strong Wolfe conditions (algorithms 3.5 and 3.6: bracketing,
// then zoom by safeguarded cubic interpolation). Used by the linear probe
// (train_head/probe.h); written for any smooth objective over a vector of doubles.
//
// Deterministic: the iteration is sequential double arithmetic in a fixed order, so the result
// depends only on the objective's values, which the probe computes identically for any thread
// count.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace vggcache {

struct LbfgsOptions {
  int max_iter = 100;       // iterations (each one line search)
  double tol = 1e-4;        // stop when ‖∇f‖_∞ ≤ tol · grad_scale
  double grad_scale = 1.0;  // the probe passes the training weight sum (tol on the mean's gradient)
  int history = 10;         // correction pairs kept (m)
  int max_evaluations = 25;    // objective evaluations per line search
  double c1 = 1e-4, c2 = 0.9;  // sufficient decrease and curvature constants (strong Wolfe)
  // Stop when an iteration lowers f by at most ftol · max(|f|, 1) (scipy's factr test; the
  // objective cannot resolve smaller changes).
  double ftol = 64 * 2.220446049250313e-16;
  // How far above f(x) a line-search point may be and still pass on its slope (the approximate
  // Wolfe condition, lbfgs.cpp), relative to |f(x)|: above the rounding of f (the probe's float32
  // products round to ~1e-7), below any decrease worth measuring.
  double f_noise = 1e-6;
};

struct LbfgsIteration {
  int iteration = 0;      // 1-based
  int evaluations = 0;    // objective evaluations so far
  double f = 0.0;         // objective after the iteration
  double grad_inf = 0.0;  // ‖∇f‖_∞ / grad_scale
  double step = 0.0;      // line-search step length α (x moved by α·d)
};

struct LbfgsResult {
  std::vector<double> x;  // the last accepted point
  double f = 0.0;
  double grad_inf = 0.0;  // ‖∇f‖_∞ / grad_scale at x
  int iterations = 0;
  int evaluations = 0;
  bool converged = false;  // stopped by tol or ftol (not max_iter or a failed line search)
  // "gradient" (‖∇f‖_∞ ≤ tol), "objective" (ftol), "max_iter", or "line_search" (no step gave
  // sufficient decrease: the objective's rounding reached; x is still the best point seen).
  std::string stop;
};

// f(x, grad) returns f(x) and writes ∇f(x) into grad (resized by the callee as needed).
using LbfgsObjective =
    std::function<double(const std::vector<double>& x, std::vector<double>* grad)>;

// Minimises f from x0. on_iteration (optional) is called after every iteration.
LbfgsResult minimize_lbfgs(const LbfgsObjective& f, std::vector<double> x0,
                           const LbfgsOptions& options,
                           const std::function<void(const LbfgsIteration&)>& on_iteration = {});

}  // namespace vggcache
