#include "finetune/conv3x3.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/error.h"
#include "head/linalg.h"

namespace vggcache {

namespace {

// Output pixels per GEMM: at 64 px (4 × 4 maps) one image alone would give GEMMs 16 columns wide,
// far too narrow for the kernel; 16 images make 256, and the im2col buffer (9·512 × 256 floats,
// 4.7 MB) still stays modest.
constexpr int kColumnsPerBlock = 256;

// Fixed partition of the images into blocks: a function of the shape only.
struct Blocks {
  int images;  // per block (the last may hold fewer)
  int count;
  explicit Blocks(const Conv3x3Shape& s)
      : images(std::max(1, kColumnsPerBlock / (s.h * s.w))), count((s.n + images - 1) / images) {}
  int first(int b) const { return b * images; }
  int size(int b, int n) const { return std::min(images, n - b * images); }
};

void check(const Conv3x3Shape& s) {
  if (s.n < 1 || s.c_in < 1 || s.c_out < 1 || s.h < 1 || s.w < 1)
    throw Error(ErrorKind::kInvalidArgument,
                "conv3x3: bad shape n=" + std::to_string(s.n) + " c_in=" + std::to_string(s.c_in) +
                    " c_out=" + std::to_string(s.c_out) + " h=" + std::to_string(s.h) +
                    " w=" + std::to_string(s.w) + " (every dimension must be positive)");
}

// cols (c_in·9 × nb·h·w): row (ci, ky, kx) holds x[ci] shifted by (ky − 1, kx − 1) with zero
// padding, images side by side, so that the weight (c_out × c_in·9) multiplies it as it is stored.
void im2col(const Conv3x3Shape& s, const float* x, int nb, float* cols) {
  const int hw = s.h * s.w, ld = nb * hw;
  for (int ci = 0; ci < s.c_in; ++ci)
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx) {
        float* row = cols + static_cast<size_t>(ci * 9 + ky * 3 + kx) * ld;
        for (int b = 0; b < nb; ++b) {
          const float* src = x + static_cast<size_t>(b * s.c_in + ci) * hw;
          float* dst = row + b * hw;
          for (int y = 0; y < s.h; ++y) {
            const int sy = y + ky - 1;
            for (int xx = 0; xx < s.w; ++xx) {
              const int sx = xx + kx - 1;
              const bool inside = sy >= 0 && sy < s.h && sx >= 0 && sx < s.w;
              dst[y * s.w + xx] = inside ? src[sy * s.w + sx] : 0.0f;
            }
          }
        }
      }
}

// The adjoint of im2col: d_x (nb × c_in × h × w) = Σ of each dcols entry at the pixel it came
// from, in a fixed order. d_x must be zero on entry.
void col2im(const Conv3x3Shape& s, const float* dcols, int nb, float* d_x) {
  const int hw = s.h * s.w, ld = nb * hw;
  for (int ci = 0; ci < s.c_in; ++ci)
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx) {
        const float* row = dcols + static_cast<size_t>(ci * 9 + ky * 3 + kx) * ld;
        for (int b = 0; b < nb; ++b) {
          float* dst = d_x + static_cast<size_t>(b * s.c_in + ci) * hw;
          const float* src = row + b * hw;
          for (int y = 0; y < s.h; ++y) {
            const int sy = y + ky - 1;
            if (sy < 0 || sy >= s.h) continue;
            for (int xx = 0; xx < s.w; ++xx) {
              const int sx = xx + kx - 1;
              if (sx >= 0 && sx < s.w) dst[sy * s.w + sx] += src[y * s.w + xx];
            }
          }
        }
      }
}

// Between NCHW (images apart) and the GEMMs' c × (nb·h·w) (images side by side).
void gather_channels(const float* nchw, int nb, int c, int hw, float* rows) {
  for (int b = 0; b < nb; ++b)
    for (int ch = 0; ch < c; ++ch)
      std::copy_n(nchw + static_cast<size_t>(b * c + ch) * hw, hw,
                  rows + static_cast<size_t>(ch) * nb * hw + b * hw);
}

}  // namespace

void conv3x3_forward(const Conv3x3Shape& s, const float* x, const float* weight, const float* bias,
                     float* y) {
  check(s);
  const Blocks blocks(s);
  const int hw = s.h * s.w, k = s.c_in * 9;
  tbb::parallel_for(0, blocks.count, [&](int blk) {
    const int nb = blocks.size(blk, s.n), cols_n = nb * hw;
    const size_t in_off = static_cast<size_t>(blocks.first(blk)) * s.c_in * hw;
    const size_t out_off = static_cast<size_t>(blocks.first(blk)) * s.c_out * hw;
    std::vector<float> cols(static_cast<size_t>(k) * cols_n);
    std::vector<float> out(static_cast<size_t>(s.c_out) * cols_n);
    im2col(s, x + in_off, nb, cols.data());
    sgemm(false, false, s.c_out, cols_n, k, 1.0f, weight, k, cols.data(), cols_n, 0.0f, out.data(),
          cols_n);
    for (int b = 0; b < nb; ++b)
      for (int co = 0; co < s.c_out; ++co) {
        const float* src = out.data() + static_cast<size_t>(co) * cols_n + b * hw;
        float* dst = y + out_off + static_cast<size_t>(b * s.c_out + co) * hw;
        for (int p = 0; p < hw; ++p) dst[p] = src[p] + bias[co];
      }
  });
}

void conv3x3_backward(const Conv3x3Shape& s, const float* x, const float* weight, const float* dy,
                      float* d_weight, float* d_bias, float* d_x) {
  check(s);
  const Blocks blocks(s);
  const int hw = s.h * s.w, k = s.c_in * 9;
  const size_t n_weight = static_cast<size_t>(s.c_out) * k;
  // One block's weight and bias gradients (c_out × k, then c_out), added up over a tree that
  // parallel_deterministic_reduce fixes by the block count alone. Empty stands for zero, so the
  // identity costs no 9 MB copy.
  using Partial = std::vector<float>;
  auto one_block = [&](const tbb::blocked_range<int>& r, Partial acc) {
    if (acc.empty()) acc.assign(n_weight + s.c_out, 0.0f);
    for (int blk = r.begin(); blk != r.end(); ++blk) {
      const int nb = blocks.size(blk, s.n), cols_n = nb * hw;
      const size_t in_off = static_cast<size_t>(blocks.first(blk)) * s.c_in * hw;
      const size_t out_off = static_cast<size_t>(blocks.first(blk)) * s.c_out * hw;
      std::vector<float> dyb(static_cast<size_t>(s.c_out) * cols_n);
      std::vector<float> cols(static_cast<size_t>(k) * cols_n);
      gather_channels(dy + out_off, nb, s.c_out, hw, dyb.data());
      im2col(s, x + in_off, nb, cols.data());
      sgemm(false, true, s.c_out, k, cols_n, 1.0f, dyb.data(), cols_n, cols.data(), cols_n, 1.0f,
            acc.data(), k);
      for (int co = 0; co < s.c_out; ++co) {
        const float* row = dyb.data() + static_cast<size_t>(co) * cols_n;
        float sum = 0.0f;
        for (int p = 0; p < cols_n; ++p) sum += row[p];
        acc[n_weight + co] += sum;
      }
      if (d_x) {  // cols is free again: it takes the columns' gradient
        sgemm(true, false, k, cols_n, s.c_out, 1.0f, weight, k, dyb.data(), cols_n, 0.0f,
              cols.data(), cols_n);
        float* dst = d_x + in_off;
        std::fill_n(dst, static_cast<size_t>(nb) * s.c_in * hw, 0.0f);
        col2im(s, cols.data(), nb, dst);
      }
    }
    return acc;
  };
  auto join = [](Partial a, const Partial& b) {
    if (a.empty()) return b;
    if (!b.empty())
      for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
    return a;
  };
  Partial total = tbb::parallel_deterministic_reduce(tbb::blocked_range<int>(0, blocks.count, 1),
                                                     Partial(), one_block, join);
  std::copy_n(total.data(), n_weight, d_weight);
  std::copy_n(total.data() + n_weight, s.c_out, d_bias);
}

}  // namespace vggcache
