#include "head/head_model.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <Eigen/Core>
#include <cmath>

#include "common/error.h"
#include "head/linalg.h"
#include "head/loss.h"
#include "head/rng.h"

namespace vggcache {

namespace {

// Element i is the stream's i-th draw whichever thread computes it (Rng::peek): W1 is 6.4M
// values at hidden 256.
void fill_uniform(std::vector<float>* v, size_t n, float bound, Rng& rng) {
  v->resize(n);
  float* out = v->data();
  tbb::parallel_for(tbb::blocked_range<size_t>(0, n, size_t{1} << 16),
                    [&](const tbb::blocked_range<size_t>& r) {
                      for (size_t i = r.begin(); i != r.end(); ++i)
                        out[i] = (2.0f * unit_float(rng.peek(i)) - 1.0f) * bound;
                    });
  rng.discard(n);
}

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace

HeadWeights init_head(const HeadShape& shape, uint64_t seed) {
  if (shape.dim < 1 || shape.hidden < 0 || shape.classes < 2)
    throw Error(ErrorKind::kInvalidArgument,
                "head shape needs dim >= 1, hidden >= 0 and classes >= 2");
  HeadWeights w;
  w.shape = shape;
  // kaiming_uniform_(a=√5): gain √(2/(1+5)) · √(3/fan_in) = 1/√fan_in; the bias uses the same
  // bound.
  Rng rng(seed, Stream::kInit);
  const float bound1 = 1.0f / std::sqrt(static_cast<float>(shape.dim));
  fill_uniform(&w.w1, static_cast<size_t>(shape.rows1()) * shape.dim, bound1, rng);
  fill_uniform(&w.b1, shape.rows1(), bound1, rng);
  if (shape.probe()) return w;
  const float bound2 = 1.0f / std::sqrt(static_cast<float>(shape.hidden));
  fill_uniform(&w.w2, static_cast<size_t>(shape.outputs()) * shape.hidden, bound2, rng);
  fill_uniform(&w.b2, shape.outputs(), bound2, rng);
  return w;
}

void head_predict(const HeadWeights& w, const float* x, int n, float* prob) {
  const int h = w.shape.hidden, o = w.shape.outputs();
  if (w.shape.probe()) {  // the logits are the first layer's output
    RowMat z(n, o);
    linear_forward(x, n, w.shape.dim, w.w1.data(), w.b1.data(), o, z.data());
    probs_from_logits(z.data(), n, o, prob);
    return;
  }
  RowMat a(n, h);  // n × hidden
  linear_forward(x, n, w.shape.dim, w.w1.data(), w.b1.data(), h, a.data());
  a = a.cwiseMax(0.0f);
  Eigen::Map<const RowMat> w2(w.w2.data(), o, h);
  Eigen::Map<const Eigen::RowVectorXf> b2(w.b2.data(), o);
  RowMat z = (a * w2.transpose()).rowwise() + b2;  // n × outputs
  probs_from_logits(z.data(), n, o, prob);
}

int predicted_class(const float* prob, int classes) {
  if (classes == 2) return prob[1] > 0.5f ? 1 : 0;
  int best = 0;
  for (int k = 1; k < classes; ++k)
    if (prob[k] > prob[best]) best = k;
  return best;
}

}  // namespace vggcache
