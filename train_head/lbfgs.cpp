#include "train_head/lbfgs.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <utility>

#include "common/error.h"

namespace vggcache {

namespace {

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double inf_norm(const std::vector<double>& a) {
  double m = 0.0;
  for (double v : a) m = std::max(m, std::abs(v));
  return m;
}

// One point on the search line x + α·d: the objective, its gradient and the slope φ'(α) = ∇f·d.
struct Trial {
  double a = 0.0, f = 0.0, slope = 0.0;
  std::vector<double> x, g;
  bool decreased = false;  // f passed the sufficient-decrease test on its value
};

// The minimiser of the cubic through (a, fa, φ'a) and (b, fb, φ'b) (N&W eq. 3.59), kept in the
// middle 80% of the interval so that zoom always shrinks it; the midpoint when the cubic has no
// real minimiser (or the data are not finite).
double cubic_step(const Trial& p, const Trial& q) {
  const double lo = std::min(p.a, q.a), hi = std::max(p.a, q.a), w = hi - lo;
  const double d1 = p.slope + q.slope - 3.0 * (p.f - q.f) / (p.a - q.a);
  const double disc = d1 * d1 - p.slope * q.slope;
  double t = 0.5 * (lo + hi);
  if (disc >= 0.0 && std::isfinite(disc)) {
    const double d2 = std::copysign(std::sqrt(disc), q.a - p.a);
    const double denom = q.slope - p.slope + 2.0 * d2;
    if (denom != 0.0) t = q.a - (q.a - p.a) * (q.slope + d2 - d1) / denom;
  }
  if (!std::isfinite(t)) t = 0.5 * (lo + hi);
  return std::min(std::max(t, lo + 0.1 * w), hi - 0.1 * w);
}

class LineSearch {
 public:
  LineSearch(const LbfgsObjective& f, const LbfgsOptions& o, const std::vector<double>& x,
             double f0, const std::vector<double>& d, double slope0)
      : f_(f), o_(o), x_(x), d_(d), f0_(f0), slope0_(slope0) {}

  // Algorithm 3.5: grows α until the interval [previous, current] brackets a strong Wolfe point,
  // then zooms. Returns true with the accepted point in *out; false when no step of the budget
  // gave a sufficient decrease.
  bool run(double a_init, const std::vector<double>& g0, Trial* out) {
    Trial prev{0.0, f0_, slope0_, x_, g0};
    double a = a_init;
    for (int i = 0; evaluations_ < o_.max_evaluations; ++i) {
      Trial cur = eval(a);
      if (!armijo(cur) || (i > 0 && cur.decreased && cur.f >= prev.f))
        return zoom(std::move(prev), std::move(cur), out);
      if (std::abs(cur.slope) <= -o_.c2 * slope0_) {
        *out = std::move(cur);
        return true;
      }
      if (cur.slope >= 0.0) return zoom(std::move(cur), std::move(prev), out);
      prev = std::move(cur);
      a *= 2.0;  // still descending with a sufficient decrease: a longer step
    }
    if (prev.a > 0.0) {  // budget spent while growing: the last step decreased enough
      *out = std::move(prev);
      return true;
    }
    return false;
  }
  int evaluations() const { return evaluations_; }

 private:
  // Sufficient decrease (Armijo), or its approximate form (Hager & Zhang, 2005) once the change
  // in f is below f's rounding: φ'(α) ≤ (2c1 − 1)·φ'(0) is Armijo's condition for a quadratic,
  // and the slope stays measurable where f's difference does not (near the optimum, and always
  // a little with the float32 products of the probe).
  bool armijo(Trial& t) const {
    if (!std::isfinite(t.f)) return false;
    t.decreased = t.f <= f0_ + o_.c1 * t.a * slope0_;
    return t.decreased ||
           (t.f <= f0_ + o_.f_noise * std::abs(f0_) && t.slope <= (2.0 * o_.c1 - 1.0) * slope0_);
  }
  Trial eval(double a) {
    Trial t;
    t.a = a;
    t.x.resize(x_.size());
    for (size_t i = 0; i < x_.size(); ++i) t.x[i] = x_[i] + a * d_[i];
    t.f = f_(t.x, &t.g);
    t.slope = dot(t.g, d_);
    ++evaluations_;
    return t;
  }
  // Algorithm 3.6. `lo` satisfies sufficient decrease and has the lowest f seen; the interval
  // between lo and hi holds a strong Wolfe point.
  bool zoom(Trial lo, Trial hi, Trial* out) {
    while (evaluations_ < o_.max_evaluations) {
      if (std::abs(hi.a - lo.a) <= 1e-16 * std::max(1.0, std::abs(lo.a))) break;
      Trial cur = eval(cubic_step(lo, hi));
      if (!armijo(cur) || (cur.decreased && cur.f >= lo.f)) {
        hi = std::move(cur);
        continue;
      }
      if (std::abs(cur.slope) <= -o_.c2 * slope0_) {
        *out = std::move(cur);
        return true;
      }
      if (cur.slope * (hi.a - lo.a) >= 0.0) hi = std::move(lo);
      lo = std::move(cur);
    }
    // No strong Wolfe point within the budget: a step with sufficient decrease still makes
    // progress (the curvature pair may then be skipped).
    if (lo.a > 0.0) {
      *out = std::move(lo);
      return true;
    }
    return false;
  }

  const LbfgsObjective& f_;
  const LbfgsOptions& o_;
  const std::vector<double>& x_;
  const std::vector<double>& d_;
  double f0_, slope0_;
  int evaluations_ = 0;
};

struct Pair {
  std::vector<double> s, y;
  double rho;  // 1 / (s·y)
};

// d = −H·g by the two-loop recursion (algorithm 7.4), H0 = (s·y / y·y) I from the newest pair.
std::vector<double> direction(const std::deque<Pair>& pairs, const std::vector<double>& g) {
  std::vector<double> q = g;
  std::vector<double> alpha(pairs.size());
  for (size_t k = pairs.size(); k-- > 0;) {
    alpha[k] = pairs[k].rho * dot(pairs[k].s, q);
    for (size_t i = 0; i < q.size(); ++i) q[i] -= alpha[k] * pairs[k].y[i];
  }
  if (!pairs.empty()) {
    const Pair& last = pairs.back();
    const double gamma = 1.0 / (last.rho * dot(last.y, last.y));
    for (double& v : q) v *= gamma;
  }
  for (size_t k = 0; k < pairs.size(); ++k) {
    const double beta = pairs[k].rho * dot(pairs[k].y, q);
    for (size_t i = 0; i < q.size(); ++i) q[i] += (alpha[k] - beta) * pairs[k].s[i];
  }
  for (double& v : q) v = -v;
  return q;
}

}  // namespace

LbfgsResult minimize_lbfgs(const LbfgsObjective& f, std::vector<double> x0, const LbfgsOptions& o,
                           const std::function<void(const LbfgsIteration&)>& on_iteration) {
  if (o.max_iter < 1 || !(o.tol > 0.0) || o.history < 1 || o.max_evaluations < 1 ||
      !(o.grad_scale > 0.0))
    throw Error(ErrorKind::kInvalidArgument,
                "L-BFGS needs max_iter, history, max_evaluations >= 1 and tol, grad_scale > 0");
  LbfgsResult r;
  r.x = std::move(x0);
  std::vector<double> g;
  r.f = f(r.x, &g);
  r.evaluations = 1;
  if (!std::isfinite(r.f))
    throw Error(ErrorKind::kInvalidArgument, "L-BFGS: the objective is not finite at the start");
  r.grad_inf = inf_norm(g) / o.grad_scale;
  if (r.grad_inf <= o.tol) {
    r.converged = true;
    r.stop = "gradient";
    return r;
  }
  std::deque<Pair> pairs;
  r.stop = "max_iter";
  for (int it = 1; it <= o.max_iter; ++it) {
    std::vector<double> d = direction(pairs, g);
    double slope = dot(g, d);
    if (!(slope < 0.0)) {  // rounding spoiled H: restart from steepest descent
      pairs.clear();
      d = direction(pairs, g);
      slope = dot(g, d);
    }
    // The first step is scaled to length 1 (the gradient's scale is arbitrary); afterwards the
    // quasi-Newton step α = 1 is tried first, as L-BFGS's convergence theory asks.
    const double a_init = pairs.empty() ? std::min(1.0, 1.0 / std::sqrt(dot(g, g))) : 1.0;
    LineSearch ls(f, o, r.x, r.f, d, slope);
    Trial t;
    const bool ok = ls.run(a_init, g, &t);
    r.evaluations += ls.evaluations();
    if (!ok) {
      r.stop = "line_search";
      break;
    }
    Pair p;
    p.s.resize(r.x.size());
    p.y.resize(r.x.size());
    for (size_t i = 0; i < r.x.size(); ++i) {
      p.s[i] = t.x[i] - r.x[i];
      p.y[i] = t.g[i] - g[i];
    }
    const double sy = dot(p.s, p.y);
    // Only pairs with positive curvature keep H positive definite (strong Wolfe guarantees it
    // in exact arithmetic; an Armijo-only step may not).
    if (sy > 1e-12 * std::sqrt(dot(p.s, p.s) * dot(p.y, p.y)) && sy > 0.0) {
      p.rho = 1.0 / sy;
      pairs.push_back(std::move(p));
      if (static_cast<int>(pairs.size()) > o.history) pairs.pop_front();
    }
    const double f_prev = r.f;
    const bool decreased = t.decreased;
    r.x = std::move(t.x);
    g = std::move(t.g);
    r.f = t.f;
    r.grad_inf = inf_norm(g) / o.grad_scale;
    r.iterations = it;
    if (on_iteration) on_iteration({it, r.evaluations, r.f, r.grad_inf, t.a});
    if (r.grad_inf <= o.tol) {
      r.converged = true;
      r.stop = "gradient";
      break;
    }
    // Only a step whose decrease f could measure says that f has stopped decreasing.
    if (decreased && f_prev - r.f <= o.ftol * std::max({std::abs(f_prev), std::abs(r.f), 1.0})) {
      r.converged = true;
      r.stop = "objective";
      break;
    }
  }
  return r;
}

}  // namespace vggcache
