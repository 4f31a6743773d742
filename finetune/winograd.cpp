#include "finetune/winograd.h"

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "head/linalg.h"
#include "head/simd.h"

namespace vggcache {

namespace {

constexpr int kT = 6;         // input tile side
constexpr int kM = 4;         // output tile side
constexpr int kXi = kT * kT;  // transformed points: 36 GEMMs

// Interpolation points 0, ±1, ±2 and ∞ (Lavin & Gray's F(4, 3)).
constexpr float kBt[kT][kT] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                               {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
constexpr double kGd[kT][3] = {{1.0 / 4, 0, 0},
                               {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                               {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                               {1.0 / 24, 1.0 / 12, 1.0 / 6},
                               {1.0 / 24, -1.0 / 12, 1.0 / 6},
                               {0, 0, 1}};
constexpr float kAt[kM][kT] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

// A coefficient matrix r × k, row-major, in float.
struct Coef {
  int r, k;
  float c[kT * kT];
  float at(int i, int j) const { return c[i * k + j]; }
};
Coef make_bt() {  // Bᵀ
  Coef m{kT, kT, {}};
  for (int i = 0; i < kT; ++i)
    for (int j = 0; j < kT; ++j) m.c[i * kT + j] = kBt[i][j];
  return m;
}
Coef make_b() {  // B
  Coef m{kT, kT, {}};
  for (int i = 0; i < kT; ++i)
    for (int j = 0; j < kT; ++j) m.c[i * kT + j] = kBt[j][i];
  return m;
}
Coef make_at() {  // Aᵀ, 4 × 6
  Coef m{kM, kT, {}};
  for (int i = 0; i < kM; ++i)
    for (int j = 0; j < kT; ++j) m.c[i * kT + j] = kAt[i][j];
  return m;
}
Coef make_a() {  // A, 6 × 4
  Coef m{kT, kM, {}};
  for (int i = 0; i < kT; ++i)
    for (int j = 0; j < kM; ++j) m.c[i * kM + j] = kAt[j][i];
  return m;
}
Coef make_g() {  // G, 6 × 3 (1/6, 1/12, 1/24 rounded to float)
  Coef m{kT, 3, {}};
  for (int i = 0; i < kT; ++i)
    for (int j = 0; j < 3; ++j) m.c[i * 3 + j] = static_cast<float>(kGd[i][j]);
  return m;
}
Coef make_gt() {  // Gᵀ, 3 × 6
  Coef m{3, kT, {}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < kT; ++j) m.c[i * kT + j] = static_cast<float>(kGd[j][i]);
  return m;
}
const Coef kBtM = make_bt(), kBM = make_b(), kAtM = make_at(), kAM = make_a(), kGM = make_g(),
           kGtM = make_gt();

// out[i] = Σ_k C[i][k] · in[k] for rows of `width` floats, zero coefficients skipped (a fixed
// order: the same floats for every clone, as -ffp-contract=off forbids fused multiply-adds).
VGGCACHE_SIMD_CLONES
void combine_rows(const Coef& C, const float* const* in, float* const* out, int width) {
  for (int i = 0; i < C.r; ++i) {
    float* __restrict o = out[i];
    bool first = true;
    for (int k = 0; k < C.k; ++k) {
      const float c = C.at(i, k);
      if (c == 0.0f) continue;
      const float* __restrict x = in[k];
      if (first)
        for (int j = 0; j < width; ++j) o[j] = c * x[j];
      else
        for (int j = 0; j < width; ++j) o[j] += c * x[j];
      first = false;
    }
    if (first) std::fill_n(o, width, 0.0f);
  }
}

// The 2-D transform Y = L X Rᵀ of every tile of a row set: X holds X.r × R.k rows (element (p, q)
// of the tile in row p·R.k + q), Y gets L.r × R.r rows; `mid` is scratch of L.r × R.k rows. Each
// row has `width` floats, one per tile.
void transform_2d(const Coef& L, const Coef& R, const float* const* x, float* const* y, float* mid,
                  int width) {
  const float* in[kT];
  float* out[kT];
  for (int q = 0; q < R.k; ++q) {  // columns: mid(:, q) = L · X(:, q)
    for (int p = 0; p < L.k; ++p) in[p] = x[p * R.k + q];
    for (int i = 0; i < L.r; ++i) out[i] = mid + static_cast<size_t>(i * R.k + q) * width;
    combine_rows(L, in, out, width);
  }
  for (int i = 0; i < L.r; ++i) {  // rows: Y(i, :) = R · mid(i, :)
    for (int q = 0; q < R.k; ++q) in[q] = mid + static_cast<size_t>(i * R.k + q) * width;
    for (int j = 0; j < R.r; ++j) out[j] = y[i * R.r + j];
    combine_rows(R, in, out, width);
  }
}

// The 36 planes of a transformed buffer lie this far apart: their size plus one cache line, so the
// 36 rows a tile's transform reads or writes at once do not all fall into one L1 set (plane sizes
// are multiples of 4 KB at VGG's shapes, which maps every row to the same set).
size_t xi_stride(size_t plane) {
  return plane + 16;
}

void check(const Conv3x3Shape& s, const WinogradWeights& w) {
  if (s.n < 1 || s.c_in < 1 || s.c_out < 1 || s.h < 1 || s.w < 1)
    throw Error(ErrorKind::kInvalidArgument,
                "winograd conv: bad shape n=" + std::to_string(s.n) +
                    " c_in=" + std::to_string(s.c_in) + " c_out=" + std::to_string(s.c_out) +
                    " h=" + std::to_string(s.h) + " w=" + std::to_string(s.w) +
                    " (every dimension must be positive)");
  if (w.c_out != s.c_out || w.c_in != s.c_in ||
      w.u.size() != kXi * xi_stride(static_cast<size_t>(s.c_out) * s.c_in))
    throw Error(ErrorKind::kInvalidArgument,
                "winograd conv: prepared weights are " + std::to_string(w.c_out) + " × " +
                    std::to_string(w.c_in) + ", the shape needs " + std::to_string(s.c_out) +
                    " × " + std::to_string(s.c_in));
}

// Tiles of 4 × 4 outputs; column b·per_image + ty·tw + tx of the transformed data is image b's
// tile (ty, tx).
struct Tiles {
  int th, tw, per_image;
  int cols;  // n · per_image: the data GEMMs' column count
  explicit Tiles(const Conv3x3Shape& s)
      : th((s.h + kM - 1) / kM), tw((s.w + kM - 1) / kM), per_image(th * tw), cols(s.n * th * tw) {}
};

// Column blocks of the data GEMMs: a function of the shape only (never of the thread count).
constexpr int kColsPerBlock = 128;

struct Scratch {
  std::vector<float> a, b;
};
tbb::enumerable_thread_specific<Scratch>& scratch() {
  static tbb::enumerable_thread_specific<Scratch> s;
  return s;
}
float* sized(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}
// The transformed data of one call (several MB), kept per calling thread between calls: fresh
// buffers would cost page faults on every call. A call made while its thread's buffers are in use
// (a nested call from a stolen TBB task) gets buffers of its own.
struct CallBuffers {
  std::vector<float> buf[3];
  bool busy = false;
};
thread_local CallBuffers t_buffers;
class BufferLease {
 public:
  BufferLease() : b_(t_buffers.busy ? &own_ : &t_buffers) { b_->busy = true; }
  ~BufferLease() { b_->busy = false; }
  BufferLease(const BufferLease&) = delete;
  BufferLease& operator=(const BufferLease&) = delete;
  float* get(int i, size_t n) { return sized(b_->buf[i], n); }

 private:
  CallBuffers own_;
  CallBuffers* b_;
};

// Element (i, j) of every tile of channel `ch` of src (n × c × h × w) into rows (rows ·cols): the
// 6 × 6 input tiles (offset −1, zero padded) or the 4 × 4 output tiles.
void gather_tiles(const Conv3x3Shape& s, const Tiles& tl, const float* src, int c, int ch, int side,
                  int offset, float* rows) {
  const size_t hw = static_cast<size_t>(s.h) * s.w;
  for (int b = 0; b < s.n; ++b) {
    const float* plane = src + (static_cast<size_t>(b) * c + ch) * hw;
    for (int ty = 0; ty < tl.th; ++ty)
      for (int tx = 0; tx < tl.tw; ++tx) {
        const int col = b * tl.per_image + ty * tl.tw + tx;
        for (int i = 0; i < side; ++i) {
          const int y = ty * kM + i + offset;
          for (int j = 0; j < side; ++j) {
            const int x = tx * kM + j + offset;
            rows[static_cast<size_t>(i * side + j) * tl.cols + col] =
                (y >= 0 && y < s.h && x >= 0 && x < s.w) ? plane[y * s.w + x] : 0.0f;
          }
        }
      }
  }
}

// V (36 × c × cols, ξ-major) = Bᵀ d B for every tile of every channel of src (n × c × h × w).
void transform_input(const Conv3x3Shape& s, const Tiles& tl, const float* src, int c, float* v) {
  const size_t ld = xi_stride(static_cast<size_t>(c) * tl.cols);
  tbb::parallel_for(0, c, [&](int ch) {
    Scratch& sc = scratch().local();
    float* d = sized(sc.a, static_cast<size_t>(2 * kXi) * tl.cols);
    float* mid = d + static_cast<size_t>(kXi) * tl.cols;
    gather_tiles(s, tl, src, c, ch, kT, -1, d);
    const float* x[kXi];
    float* y[kXi];
    for (int e = 0; e < kXi; ++e) {
      x[e] = d + static_cast<size_t>(e) * tl.cols;
      y[e] = v + e * ld + static_cast<size_t>(ch) * tl.cols;
    }
    transform_2d(kBtM, kBtM, x, y, mid, tl.cols);
  });
}

// The 36 GEMMs in fixed column blocks: out_ξ (rows × cols) = op(a_ξ) · b_ξ, a_ξ stored
// rows × inner (inner × rows when trans_a).
void transformed_products(bool trans_a, int rows, int inner, const float* a, const float* b,
                          int cols, float* out) {
  const size_t a_plane = xi_stride(static_cast<size_t>(rows) * inner),
               b_plane = xi_stride(static_cast<size_t>(inner) * cols),
               o_plane = xi_stride(static_cast<size_t>(rows) * cols);
  const int blocks = (cols + kColsPerBlock - 1) / kColsPerBlock;
  tbb::parallel_for(
      0, kXi * blocks,
      [&](int task) {
        const int xi = task / blocks, blk = task % blocks;
        const int c0 = blk * kColsPerBlock, nc = std::min(kColsPerBlock, cols - c0);
        sgemm(trans_a, false, rows, nc, inner, 1.0f, a + xi * a_plane, trans_a ? rows : inner,
              b + xi * b_plane + c0, cols, 0.0f, out + xi * o_plane + c0, cols);
      },
      tbb::simple_partitioner());
}

}  // namespace

void winograd_prepare(int c_out, int c_in, const float* weight, WinogradWeights* out) {
  if (c_out < 1 || c_in < 1)
    throw Error(
        ErrorKind::kInvalidArgument,
        "winograd conv: bad weight shape " + std::to_string(c_out) + " × " + std::to_string(c_in));
  const size_t plane = xi_stride(static_cast<size_t>(c_out) * c_in);
  out->c_out = c_out;
  out->c_in = c_in;
  out->u.resize(kXi * plane);
  float* u = out->u.data();
  tbb::parallel_for(0, c_out, [&](int co) {
    // One output channel: its 9 taps as rows over c_in, transformed into its 36 rows of U.
    Scratch& sc = scratch().local();
    float* g = sized(sc.a, static_cast<size_t>(9 + kT * 3) * c_in);
    float* mid = g + static_cast<size_t>(9) * c_in;
    for (int ci = 0; ci < c_in; ++ci)
      for (int t = 0; t < 9; ++t)
        g[static_cast<size_t>(t) * c_in + ci] =
            weight[(static_cast<size_t>(co) * c_in + ci) * 9 + t];
    const float* x[9];
    float* y[kXi];
    for (int t = 0; t < 9; ++t) x[t] = g + static_cast<size_t>(t) * c_in;
    for (int e = 0; e < kXi; ++e) y[e] = u + e * plane + static_cast<size_t>(co) * c_in;
    transform_2d(kGM, kGM, x, y, mid, c_in);
  });
}

size_t winograd_input_bytes(const Conv3x3Shape& s) {
  return kXi * xi_stride(static_cast<size_t>(s.c_in) * Tiles(s).cols) * sizeof(float);
}

void winograd_forward(const Conv3x3Shape& s, const float* x, const WinogradWeights& w,
                      const float* bias, float* y, WinogradInput* keep) {
  check(s, w);
  const Tiles tl(s);
  BufferLease lease;
  const size_t v_size = kXi * xi_stride(static_cast<size_t>(s.c_in) * tl.cols);
  float* v;
  if (keep) {
    keep->c_in = s.c_in;
    keep->cols = tl.cols;
    keep->v.resize(v_size);
    v = keep->v.data();
  } else {
    v = lease.get(0, v_size);
  }
  float* m = lease.get(1, kXi * xi_stride(static_cast<size_t>(s.c_out) * tl.cols));
  transform_input(s, tl, x, s.c_in, v);
  transformed_products(false, s.c_out, s.c_in, w.u.data(), v, tl.cols, m);
  const size_t ld = xi_stride(static_cast<size_t>(s.c_out) * tl.cols),
               hw = static_cast<size_t>(s.h) * s.w;
  tbb::parallel_for(0, s.c_out, [&](int co) {
    Scratch& sc = scratch().local();
    float* out = sized(sc.a, static_cast<size_t>(kM * kM + kM * kT) * tl.cols);
    float* mid = out + static_cast<size_t>(kM * kM) * tl.cols;
    const float* in[kXi];
    float* o[kM * kM];
    for (int e = 0; e < kXi; ++e) in[e] = m + e * ld + static_cast<size_t>(co) * tl.cols;
    for (int e = 0; e < kM * kM; ++e) o[e] = out + static_cast<size_t>(e) * tl.cols;
    transform_2d(kAtM, kAtM, in, o, mid, tl.cols);
    for (int b = 0; b < s.n; ++b) {
      float* plane = y + (static_cast<size_t>(b) * s.c_out + co) * hw;
      for (int ty = 0; ty < tl.th; ++ty)
        for (int tx = 0; tx < tl.tw; ++tx) {
          const int col = b * tl.per_image + ty * tl.tw + tx;
          for (int i = 0; i < kM; ++i)
            for (int j = 0; j < kM; ++j) {
              const int yy = ty * kM + i, xx = tx * kM + j;
              if (yy < s.h && xx < s.w) plane[yy * s.w + xx] = o[i * kM + j][col] + bias[co];
            }
        }
    }
  });
}

void winograd_backward(const Conv3x3Shape& s, const float* x, const WinogradWeights& w,
                       const float* dy, float* d_weight, float* d_bias, float* d_x,
                       const WinogradInput* kept) {
  check(s, w);
  const Tiles tl(s);
  const size_t hw = static_cast<size_t>(s.h) * s.w;
  // dM (36 × c_out × cols) = A dY Aᵀ per tile (dY zero outside the map); d_bias on the way.
  BufferLease lease;
  const size_t ldm = xi_stride(static_cast<size_t>(s.c_out) * tl.cols);
  float* dm = lease.get(0, kXi * ldm);
  tbb::parallel_for(0, s.c_out, [&](int co) {
    float sum = 0.0f;
    for (int b = 0; b < s.n; ++b) {
      const float* plane = dy + (static_cast<size_t>(b) * s.c_out + co) * hw;
      for (size_t i = 0; i < hw; ++i) sum += plane[i];
    }
    d_bias[co] = sum;
    Scratch& sc = scratch().local();
    float* g = sized(sc.a, static_cast<size_t>(kM * kM + kT * kM) * tl.cols);
    float* mid = g + static_cast<size_t>(kM * kM) * tl.cols;
    gather_tiles(s, tl, dy, s.c_out, co, kM, 0, g);
    const float* in[kM * kM];
    float* out[kXi];
    for (int e = 0; e < kM * kM; ++e) in[e] = g + static_cast<size_t>(e) * tl.cols;
    for (int e = 0; e < kXi; ++e) out[e] = dm + e * ldm + static_cast<size_t>(co) * tl.cols;
    transform_2d(kAM, kAM, in, out, mid, tl.cols);
  });
  const size_t ldv = xi_stride(static_cast<size_t>(s.c_in) * tl.cols);
  const bool reuse =
      kept && kept->c_in == s.c_in && kept->cols == tl.cols && kept->v.size() == kXi * ldv;
  float* scratch_v = lease.get(1, kXi * ldv);
  const float* v = scratch_v;
  if (reuse)
    v = kept->v.data();
  else
    transform_input(s, tl, x, s.c_in, scratch_v);

  // ∂U_ξ (c_out × c_in) = dM_ξ · V_ξᵀ: one GEMM per ξ over all of the batch's tiles (rows split
  // in two for balance, never the sum), so no partial sums cross tasks.
  const size_t plane = xi_stride(static_cast<size_t>(s.c_out) * s.c_in);
  float* du = lease.get(2, kXi * plane);
  constexpr int kRowSplit = 2;
  tbb::parallel_for(
      0, kXi * kRowSplit,
      [&](int task) {
        const int xi = task / kRowSplit, part = task % kRowSplit;
        const int rows = (s.c_out + kRowSplit - 1) / kRowSplit;
        const int r0 = std::min(s.c_out, part * rows), nr = std::min(rows, s.c_out - r0);
        if (nr == 0) return;
        sgemm(false, true, nr, s.c_in, tl.cols, 1.0f,
              dm + xi * ldm + static_cast<size_t>(r0) * tl.cols, tl.cols, v + xi * ldv, tl.cols,
              0.0f, du + xi * plane + static_cast<size_t>(r0) * s.c_in, s.c_in);
      },
      tbb::simple_partitioner());
  // ∂g = Gᵀ ∂U G, per output channel: its 36 rows over c_in into 9 rows, then interleaved into
  // torchvision's layout.
  tbb::parallel_for(0, s.c_out, [&](int co) {
    Scratch& sc = scratch().local();
    float* g = sized(sc.a, static_cast<size_t>(9 + 3 * kT) * s.c_in);
    float* mid = g + static_cast<size_t>(9) * s.c_in;
    const float* in[kXi];
    float* out[9];
    for (int e = 0; e < kXi; ++e) in[e] = du + e * plane + static_cast<size_t>(co) * s.c_in;
    for (int t = 0; t < 9; ++t) out[t] = g + static_cast<size_t>(t) * s.c_in;
    transform_2d(kGtM, kGtM, in, out, mid, s.c_in);
    for (int ci = 0; ci < s.c_in; ++ci)
      for (int t = 0; t < 9; ++t)
        d_weight[(static_cast<size_t>(co) * s.c_in + ci) * 9 + t] = out[t][ci];
  });
  if (!d_x) return;

  // ∂V_ξ (c_in × cols) = U_ξᵀ · dM_ξ, then ∂d = B ∂V Bᵀ, added into the overlapping input tiles
  // in tile order (per input channel, so no two tasks write one value).
  float* dv = scratch_v;  // V (if computed here) is no longer needed
  transformed_products(true, s.c_in, s.c_out, w.u.data(), dm, tl.cols, dv);
  tbb::parallel_for(0, s.c_in, [&](int ci) {
    Scratch& sc = scratch().local();
    float* dd = sized(sc.a, static_cast<size_t>(2 * kXi) * tl.cols);
    float* mid = dd + static_cast<size_t>(kXi) * tl.cols;
    const float* in[kXi];
    float* out[kXi];
    for (int e = 0; e < kXi; ++e) {
      in[e] = dv + e * ldv + static_cast<size_t>(ci) * tl.cols;
      out[e] = dd + static_cast<size_t>(e) * tl.cols;
    }
    transform_2d(kBM, kBM, in, out, mid, tl.cols);
    for (int b = 0; b < s.n; ++b) {
      float* plane_out = d_x + (static_cast<size_t>(b) * s.c_in + ci) * hw;
      std::fill_n(plane_out, hw, 0.0f);
      for (int ty = 0; ty < tl.th; ++ty)
        for (int tx = 0; tx < tl.tw; ++tx) {
          const int col = b * tl.per_image + ty * tl.tw + tx;
          for (int i = 0; i < kT; ++i)
            for (int j = 0; j < kT; ++j) {
              const int yy = ty * kM + i - 1, xx = tx * kM + j - 1;
              if (yy >= 0 && yy < s.h && xx >= 0 && xx < s.w)
                plane_out[yy * s.w + xx] += out[i * kT + j][col];
            }
        }
    }
  });
}

}  // namespace vggcache
