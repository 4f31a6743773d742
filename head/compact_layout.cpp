#include "head/compact_layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>

#include "common/error.h"
#include "head/simd.h"

namespace vggcache {

CompactLayout CompactLayout::from_meta(const CacheMeta& m) {
  if (!codec_is_prepool(m.codec) || m.prepool_shape.size() != 3)
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("the compact path needs a prepool-f32 or prepool-f16 cache (this one "
                            "is {})",
                            codec_name(m.codec)));
  return CompactLayout(m.prepool_shape[0], m.prepool_shape[1], m.prepool_shape[2]);
}

CompactLayout::CompactLayout(int channels, int h, int w)
    : channels_(channels), h_(h), w_(w), pool_(pool_windows(h, w)) {
  if (channels < 1 || h < 1 || w < 1)
    throw Error(ErrorKind::kInvalidArgument,
                fmt::format("prepool shape {}×{}×{} is not a feature map", channels, h, w));
  cells_.assign(pool_.windows.size(), 0);
  for (int win : pool_.cell_window) ++cells_[win];
  // Each window's cells in increasing order (CSR), for sum_columns().
  window_cells_first_.assign(1, 0);
  for (int k = 0; k < windows(); ++k) {
    for (int cell = 0; cell < kCells; ++cell)
      if (pool_.cell_window[cell] == k) window_cells_.push_back(cell);
    window_cells_first_.push_back(static_cast<int>(window_cells_.size()));
  }
  // Each window's values in the expansion's order (rows, then columns), and its divisors.
  auto exact_inverse = [](int d) {
    return (d & (d - 1)) == 0 ? 1.0f / static_cast<float>(d) : 0.f;
  };
  for (const PoolWindows::Window& win : pool_.windows) {
    Mean mean;
    mean.first = static_cast<int>(offsets_.size());
    for (int r = win.r0; r < win.r1; ++r)
      for (int q = win.c0; q < win.c1; ++q) offsets_.push_back(r * w_ + q);
    mean.last = static_cast<int>(offsets_.size());
    mean.kh = static_cast<float>(win.r1 - win.r0);
    mean.kw = static_cast<float>(win.c1 - win.c0);
    mean.scale = exact_inverse(win.r1 - win.r0) * exact_inverse(win.c1 - win.c0);
    means_.push_back(mean);
  }
}

CompactLayout CompactLayout::with_input(CompactInput input) const {
  CompactLayout l = *this;
  l.input_ = input;
  return l;
}

namespace {

// v ÷ kh ÷ kw for `width` values, as window_means() divides a window's sum.
template <typename Mean>
void divide_by_window(float* __restrict v, int width, const Mean& mean) {
  if (mean.scale > 0) {
    for (int j = 0; j < width; ++j) v[j] *= mean.scale;
  } else {
    for (int j = 0; j < width; ++j) v[j] = v[j] / mean.kh / mean.kw;
  }
}

// o = a (first term of a sum), then o += b for each further term.
void copy_row(const float* __restrict a, int width, float* __restrict o) {
  for (int j = 0; j < width; ++j) o[j] = a[j];
}
void add_row(const float* __restrict b, int width, float* __restrict o) {
  for (int j = 0; j < width; ++j) o[j] += b[j];
}
void add_scaled_row(const float* __restrict b, float f, int width, float* __restrict o) {
  for (int j = 0; j < width; ++j) o[j] += f * b[j];
}

}  // namespace

VGGCACHE_SIMD_CLONES
void CompactLayout::sum_rows(const float* cells, int n, int width, float* out) const {
  const int k_count = windows();
  for (int c = 0; c < n; ++c) {
    const float* in = cells + static_cast<size_t>(c) * kCells * width;
    for (int k = 0; k < k_count; ++k) {
      float* o = out + (static_cast<size_t>(c) * k_count + k) * width;
      const int first = window_cells_first_[k], last = window_cells_first_[k + 1];
      copy_row(in + static_cast<size_t>(window_cells_[first]) * width, width, o);
      for (int i = first + 1; i < last; ++i)
        add_row(in + static_cast<size_t>(window_cells_[i]) * width, width, o);
    }
  }
}

VGGCACHE_SIMD_CLONES
void CompactLayout::window_rows(const float* map, int n, int width, float* out) const {
  const int k_count = windows(), hw = h_ * w_;
  for (int c = 0; c < n; ++c) {
    const float* in = map + static_cast<size_t>(c) * hw * width;
    for (int k = 0; k < k_count; ++k) {
      const Mean& mean = means_[k];
      float* o = out + (static_cast<size_t>(c) * k_count + k) * width;
      copy_row(in + static_cast<size_t>(offsets_[mean.first]) * width, width, o);
      for (int i = mean.first + 1; i < mean.last; ++i)
        add_row(in + static_cast<size_t>(offsets_[i]) * width, width, o);
      divide_by_window(o, width, mean);
    }
  }
}

VGGCACHE_SIMD_CLONES
void CompactLayout::map_rows(const float* windows_in, int n, int width, float* out) const {
  const int k_count = windows(), hw = h_ * w_;
  std::fill_n(out, static_cast<size_t>(n) * hw * width, 0.0f);
  std::vector<float> scaled;  // windows whose sides are not powers of two
  for (int c = 0; c < n; ++c) {
    float* o = out + static_cast<size_t>(c) * hw * width;
    for (int k = 0; k < k_count; ++k) {
      const Mean& mean = means_[k];
      const float* in = windows_in + (static_cast<size_t>(c) * k_count + k) * width;
      if (mean.scale > 0) {
        for (int i = mean.first; i < mean.last; ++i)
          add_scaled_row(in, mean.scale, width, o + static_cast<size_t>(offsets_[i]) * width);
        continue;
      }
      scaled.assign(in, in + width);
      divide_by_window(scaled.data(), width, mean);
      for (int i = mean.first; i < mean.last; ++i)
        add_row(scaled.data(), width, o + static_cast<size_t>(offsets_[i]) * width);
    }
  }
}

void CompactLayout::window_means(const float* z, float* m) const {
  const int k_count = windows(), hw = h_ * w_, nc = channels_;
  // The operations are expand_prepool()'s, in its order: 0 + the window's values in row order,
  // then ÷ kh, then ÷ kw; x ÷ 2ᵃ ÷ 2ᵇ and x · 2⁻⁽ᵃ⁺ᵇ⁾ are the same float (unless it is subnormal),
  // so power-of-two windows multiply instead (a tenth of a division's cost). They run on
  // transposed copies (position-major, channel-minor), where every loop below is a contiguous
  // loop over channels that the compiler vectorises.
  thread_local std::vector<float> zt, sums;
  zt.resize(static_cast<size_t>(hw) * nc);         // hw × C
  sums.resize(static_cast<size_t>(k_count) * nc);  // K × C
  for (int c = 0; c < nc; ++c)
    for (int p = 0; p < hw; ++p)
      zt[static_cast<size_t>(p) * nc + c] = z[static_cast<size_t>(c) * hw + p];
  for (int k = 0; k < k_count; ++k) {
    const Mean& mean = means_[k];
    float* __restrict s = sums.data() + static_cast<size_t>(k) * nc;
    const float* first = zt.data() + static_cast<size_t>(offsets_[mean.first]) * nc;
    for (int c = 0; c < nc; ++c) s[c] = 0.f + first[c];
    for (int i = mean.first + 1; i < mean.last; ++i) {
      const float* __restrict zi = zt.data() + static_cast<size_t>(offsets_[i]) * nc;
      for (int c = 0; c < nc; ++c) s[c] += zi[c];
    }
    divide_by_window(s, nc, mean);
  }
  for (int c = 0; c < nc; ++c)
    for (int k = 0; k < k_count; ++k)
      m[static_cast<size_t>(c) * k_count + k] = sums[static_cast<size_t>(k) * nc + c];
}

void CompactLayout::sum_columns(const float* full, int ld_full, int rows, int n, float* out,
                                int ld_compact) const {
  const int k_count = windows();
  for (int r = 0; r < rows; ++r) {
    const float* fr = full + static_cast<size_t>(r) * ld_full;
    float* orow = out + static_cast<size_t>(r) * ld_compact;
    for (int c = 0; c < n; ++c) {
      const float* fc = fr + c * kCells;
      float* oc = orow + c * k_count;
      // Each window's cells in increasing order, accumulated in a register.
      for (int k = 0; k < k_count; ++k) {
        float sum = 0.f;
        for (int i = window_cells_first_[k]; i < window_cells_first_[k + 1]; ++i)
          sum += fc[window_cells_[i]];
        oc[k] = sum;
      }
    }
  }
}

void CompactLayout::expand_columns(const float* compact, int ld_compact, int rows, int n,
                                   const float* base, float* out, int ld_full) const {
  const int k_count = windows();
  const int* cw = pool_.cell_window.data();
  for (int r = 0; r < rows; ++r) {
    const float* cr = compact + static_cast<size_t>(r) * ld_compact;
    const float* br = base ? base + static_cast<size_t>(r) * ld_full : nullptr;
    float* orow = out + static_cast<size_t>(r) * ld_full;
    for (int c = 0; c < n; ++c) {
      const float* cc = cr + c * k_count;
      float* oc = orow + c * kCells;
      if (br) {
        const float* bc = br + c * kCells;
        for (int cell = 0; cell < kCells; ++cell) oc[cell] = bc[cell] + cc[cw[cell]];
      } else {
        for (int cell = 0; cell < kCells; ++cell) oc[cell] = cc[cw[cell]];
      }
    }
  }
}

}  // namespace vggcache
