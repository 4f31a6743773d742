#include "head/linalg.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <Eigen/Core>
#include <algorithm>
#include <vector>

#ifdef VGGCACHE_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace vggcache {

namespace {

// Width of the d-blocks in linear_forward: wide enough for an efficient GEMM (100 × 256 × 2048
// is ~100 MFLOP), narrow enough that 25088 splits into a dozen tasks for load balance.
constexpr int kForwardBlock = 2048;

}  // namespace

void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc) {
#ifdef VGGCACHE_HAVE_OPENBLAS
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using CMap = Eigen::Map<const RowMat, 0, Eigen::OuterStride<> >;
  Eigen::Map<RowMat, 0, Eigen::OuterStride<> > cm(c, m, n, Eigen::OuterStride<>(ldc));
  // Stored shapes: a is (trans_a ? k × m : m × k), b is (trans_b ? n × k : k × n).
  CMap am(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  CMap bm(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  if (beta == 0.0f) {
    cm.setZero();
  } else if (beta != 1.0f) {
    cm *= beta;
  }
  if (trans_a && trans_b) {
    cm.noalias() += alpha * am.transpose() * bm.transpose();
  } else if (trans_a) {
    cm.noalias() += alpha * am.transpose() * bm;
  } else if (trans_b) {
    cm.noalias() += alpha * am * bm.transpose();
  } else {
    cm.noalias() += alpha * am * bm;
  }
#endif
}

const char* blas_backend() {
#ifdef VGGCACHE_HAVE_OPENBLAS
  return "OpenBLAS";
#else
  return "Eigen";
#endif
}

void configure_blas_for_tbb() {
#ifdef VGGCACHE_HAVE_OPENBLAS
  openblas_set_num_threads(1);
#endif
  Eigen::setNbThreads(1);
}

void linear_forward(const float* x, int n, int d, const float* w, const float* bias, int h,
                    float* out) {
  const int blocks = std::max(1, (d + kForwardBlock - 1) / kForwardBlock);
  // One partial product per d-block, summed in block order afterwards: a fixed order whatever
  // the thread count. partial: blocks × n × h.
  std::vector<float> partial(static_cast<size_t>(blocks) * n * h);
  tbb::parallel_for(
      tbb::blocked_range<int>(0, blocks, 1),
      [&](const tbb::blocked_range<int>& r) {
        for (int b = r.begin(); b != r.end(); ++b) {
          int k0 = b * kForwardBlock, kw = std::min(kForwardBlock, d - k0);
          sgemm(false, true, n, h, kw, 1.0f, x + k0, d, w + k0, d, 0.0f,
                partial.data() + static_cast<size_t>(b) * n * h, h);
        }
      },
      tbb::simple_partitioner());
  const size_t cells = static_cast<size_t>(n) * h;
  tbb::parallel_for(tbb::blocked_range<size_t>(0, cells, 4096),
                    [&](const tbb::blocked_range<size_t>& r) {
                      for (size_t i = r.begin(); i != r.end(); ++i) {
                        float s = bias ? bias[i % h] : 0.0f;
                        for (int b = 0; b < blocks; ++b) s += partial[b * cells + i];
                        out[i] = s;
                      }
                    });
}

}  // namespace vggcache
