#include "finetune/conv3x3.h"

#include <tbb/blocked_range.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

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

// Fixed groups of input channels for the backward pass: a function of the shape only. 64
// channels make 576 rows of columns, a GEMM dimension wide enough for the kernel, and 8 tasks
// at 512 channels, which keeps 2 to 8 threads evenly busy.
struct ChannelGroups {
  static constexpr int kChannels = 64;
  int count;
  explicit ChannelGroups(const Conv3x3Shape& s) : count((s.c_in + kChannels - 1) / kChannels) {}
  int first(int g) const { return g * kChannels; }
  int size(int g, int c_in) const { return std::min(kChannels, c_in - g * kChannels); }
};

// The columns of images [b0, b0 + nb) and input channels [c0, c0 + cc): row ((ci − c0), ky, kx)
// holds x[b][ci] shifted by (ky − 1, kx − 1) with zero padding, images side by side (nb·h·w
// wide), so that weight rows multiply it as it is stored.
void im2col(const Conv3x3Shape& s, const float* x, int b0, int nb, int c0, int cc, float* cols) {
  const int hw = s.h * s.w, ld = nb * hw;
  for (int ci = 0; ci < cc; ++ci)
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx) {
        float* row = cols + static_cast<size_t>(ci * 9 + ky * 3 + kx) * ld;
        // Output columns [x0, x1) read input column xx + kx − 1; the rest are padding.
        const int x0 = kx == 0 ? 1 : 0, x1 = kx == 2 ? s.w - 1 : s.w;
        for (int b = 0; b < nb; ++b) {
          const float* src = x + (static_cast<size_t>(b0 + b) * s.c_in + c0 + ci) * hw;
          float* dst = row + b * hw;
          for (int y = 0; y < s.h; ++y) {
            float* d = dst + y * s.w;
            const int sy = y + ky - 1;
            if (sy < 0 || sy >= s.h) {
              std::fill_n(d, s.w, 0.0f);
              continue;
            }
            const float* r = src + sy * s.w + kx - 1;
            if (x0 > 0) d[0] = 0.0f;
            for (int xx = x0; xx < x1; ++xx) d[xx] = r[xx];
            if (x1 < s.w) d[s.w - 1] = 0.0f;
          }
        }
      }
}

// The adjoint of im2col over the whole batch for channels [c0, c0 + cc): d_x[b][ci] (overwritten)
// = Σ over (ky, kx), in that fixed order, of each dcols entry at the pixel it came from.
void col2im(const Conv3x3Shape& s, const float* dcols, int c0, int cc, float* d_x) {
  const int hw = s.h * s.w, ld = s.n * hw;
  for (int b = 0; b < s.n; ++b)
    for (int ci = 0; ci < cc; ++ci)
      std::fill_n(d_x + (static_cast<size_t>(b) * s.c_in + c0 + ci) * hw, hw, 0.0f);
  for (int ci = 0; ci < cc; ++ci)
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx) {
        const float* row = dcols + static_cast<size_t>(ci * 9 + ky * 3 + kx) * ld;
        const int x0 = kx == 0 ? 1 : 0, x1 = kx == 2 ? s.w - 1 : s.w;
        for (int b = 0; b < s.n; ++b) {
          float* dst = d_x + (static_cast<size_t>(b) * s.c_in + c0 + ci) * hw;
          const float* src = row + b * hw;
          for (int y = 0; y < s.h; ++y) {
            const int sy = y + ky - 1;
            if (sy < 0 || sy >= s.h) continue;
            float* d = dst + sy * s.w + kx - 1;
            const float* r = src + y * s.w;
            for (int xx = x0; xx < x1; ++xx) d[xx] += r[xx];
          }
        }
      }
}

}  // namespace

void conv3x3_forward(const Conv3x3Shape& s, const float* x, const float* weight, const float* bias,
                     float* y) {
  check(s);
  const Blocks blocks(s);
  const int hw = s.h * s.w, k = s.c_in * 9;
  // Reused across calls and layers: a fresh 5 MB vector per block would cost page faults.
  static tbb::enumerable_thread_specific<std::vector<float>> scratch_cols, scratch_out;
  tbb::parallel_for(
      0, blocks.count,
      [&](int blk) {
        const int nb = blocks.size(blk, s.n), cols_n = nb * hw;
        const size_t out_off = static_cast<size_t>(blocks.first(blk)) * s.c_out * hw;
        std::vector<float>& cols = scratch_cols.local();
        std::vector<float>& out = scratch_out.local();
        cols.resize(static_cast<size_t>(k) * cols_n);
        out.resize(static_cast<size_t>(s.c_out) * cols_n);
        im2col(s, x, blocks.first(blk), nb, 0, s.c_in, cols.data());
        sgemm(false, false, s.c_out, cols_n, k, 1.0f, weight, k, cols.data(), cols_n, 0.0f,
              out.data(), cols_n);
        for (int b = 0; b < nb; ++b)
          for (int co = 0; co < s.c_out; ++co) {
            const float* src = out.data() + static_cast<size_t>(co) * cols_n + b * hw;
            float* dst = y + out_off + static_cast<size_t>(b * s.c_out + co) * hw;
            for (int p = 0; p < hw; ++p) dst[p] = src[p] + bias[co];
          }
      },
      tbb::simple_partitioner());
}

void conv3x3_backward(const Conv3x3Shape& s, const float* x, const float* weight, const float* dy,
                      float* d_weight, float* d_bias, float* d_x) {
  check(s);
  const int hw = s.h * s.w, k = s.c_in * 9, cols_n = s.n * hw;
  // dy with the whole batch side by side (c_out × n·h·w), so that each weight-gradient GEMM sums
  // over every image at once: no per-block partial sums to add up afterwards.
  std::vector<float> dyr(static_cast<size_t>(s.c_out) * cols_n);
  tbb::parallel_for(0, s.c_out, [&](int co) {
    float* row = dyr.data() + static_cast<size_t>(co) * cols_n;
    for (int b = 0; b < s.n; ++b)
      std::copy_n(dy + (static_cast<size_t>(b) * s.c_out + co) * hw, hw, row + b * hw);
    float sum = 0.0f;
    for (int p = 0; p < cols_n; ++p) sum += row[p];
    d_bias[co] = sum;
  });
  // Tasks over fixed groups of input channels, each with its own rows of the column matrix:
  //   d_weight[:, group] = dy · cols[group]ᵀ  and  d_x[:, group] = col2im(weight[:, group]ᵀ · dy).
  // Every output value is one full-length dot product inside one sgemm, whichever thread runs
  // it, so results do not depend on the thread count; the groups write disjoint outputs.
  const ChannelGroups groups(s);
  static tbb::enumerable_thread_specific<std::vector<float>> scratch;
  tbb::parallel_for(
      0, groups.count,
      [&](int g) {
        const int c0 = groups.first(g), cc = groups.size(g, s.c_in), kc = cc * 9;
        std::vector<float>& cols = scratch.local();
        cols.resize(static_cast<size_t>(kc) * cols_n);
        im2col(s, x, 0, s.n, c0, cc, cols.data());
        sgemm(false, true, s.c_out, kc, cols_n, 1.0f, dyr.data(), cols_n, cols.data(), cols_n, 0.0f,
              d_weight + static_cast<size_t>(c0) * 9, k);
        if (d_x) {  // cols is free again: it takes these rows of the columns' gradient
          sgemm(true, false, kc, cols_n, s.c_out, 1.0f, weight + static_cast<size_t>(c0) * 9, k,
                dyr.data(), cols_n, 0.0f, cols.data(), cols_n);
          col2im(s, cols.data(), c0, cc, d_x);
        }
      },
      tbb::simple_partitioner());
}

}  // namespace vggcache
