// The dense algebra of the head's hot path. Matrices are row-major float32, nn.Linear's layout.
// sgemm() is single-threaded (OpenBLAS set to one thread, or Eigen's kernel); the callers split
// the work into a FIXED number of blocks run as TBB tasks, so the floating-point summation order,
// and therefore every result, is the same for any --threads.
#pragma once
#include <cstddef>

namespace vggcache {

// c (m × n) = alpha · op(a) · op(b) + beta · c, where op(a) is m × k and op(b) is k × n.
void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc);

// "OpenBLAS" or "Eigen": which kernel sgemm() uses (reported in summary.json).
const char* blas_backend();

// Makes the BLAS library single-threaded (we parallelise around it) and Eigen too.
void configure_blas_for_tbb();

// out (n × h) = x (n × d) · w (h × d)ᵀ + bias (h), parallel over fixed blocks of d.
void linear_forward(const float* x, int n, int d, const float* w, const float* bias, int h,
                    float* out);

}  // namespace vggcache
