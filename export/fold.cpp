#include "export/fold.h"

#include <fmt/core.h>

#include "common/error.h"
#include "extract/feature_net.h"

namespace vggcache {

namespace {

constexpr int kPooled = 7, kChannels = 512;

// PyTorch's adaptive pooling window of output cell o over an input of length n.
int window_begin(int o, int n) {
  return (o * n) / kPooled;
}
int window_end(int o, int n) {
  return ((o + 1) * n + kPooled - 1) / kPooled;
}

}  // namespace

int vgg16_pool5_side(int size) {
  return vgg16_pooled_side(size, 5);
}

FoldedFirstLayer fold_first_layer(const HeadFile& head, int map_h, int map_w) {
  const HeadWeights& w = head.weights;
  const size_t dim = w.shape.dim, hidden = w.shape.rows1();  // a probe: its outputs
  if (dim != size_t(kChannels) * kPooled * kPooled || map_h < 1 || map_w < 1)
    throw Error(ErrorKind::kMismatch,
                fmt::format("cannot fold a {}-d head over a {}×{} pool5 map", dim, map_h, map_w));
  const Standardizer& s = head.standardizer;
  const size_t cells = size_t(map_h) * map_w, out_dim = kChannels * cells;
  FoldedFirstLayer f;
  f.map_h = map_h;
  f.map_w = map_w;
  f.w.resize(hidden * out_dim);
  f.b.resize(hidden);
  std::vector<double> row(out_dim);
  for (size_t k = 0; k < hidden; ++k) {
    std::fill(row.begin(), row.end(), 0.0);
    double shift = 0;
    for (int c = 0; c < kChannels; ++c)
      for (int oi = 0; oi < kPooled; ++oi)
        for (int oj = 0; oj < kPooled; ++oj) {
          const size_t j = (size_t(c) * kPooled + oi) * kPooled + oj;
          double v = w.w1[k * dim + j];
          if (!s.empty()) {
            v /= double(s.std[j]);
            shift += v * double(s.mean[j]);
          }
          const int i0 = window_begin(oi, map_h), i1 = window_end(oi, map_h);
          const int j0 = window_begin(oj, map_w), j1 = window_end(oj, map_w);
          v /= double((i1 - i0) * (j1 - j0));
          for (int i = i0; i < i1; ++i)
            for (int jj = j0; jj < j1; ++jj) row[c * cells + size_t(i) * map_w + jj] += v;
        }
    for (size_t j = 0; j < out_dim; ++j) f.w[k * out_dim + j] = static_cast<float>(row[j]);
    f.b[k] = static_cast<float>(double(w.b1[k]) - shift);
  }
  return f;
}

}  // namespace vggcache
