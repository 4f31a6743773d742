// The `prepool-f32` codec: VGG16's last feature map z (C × h × w) is stored instead of the
// 25088-d vector AdaptiveAvgPool2d(7, 7) makes from it. Below 224 px the map is smaller than 7×7,
// so the vector is a fixed averaging of z (many cells share one window) and z is 5–12× smaller.
#pragma once
#include <cstdint>
#include <vector>

namespace vggcache {

// Window bounds of PyTorch's adaptive pooling: [start, end) of input index for output o.
inline int adaptive_start(int o, int out, int in) { return (o * in) / out; }
inline int adaptive_end(int o, int out, int in) { return ((o + 1) * in + out - 1) / out; }

// Expands z (C × h × w, row-major) to C × oh × ow exactly as at::adaptive_avg_pool2d on the CPU
// computes it in float32: sum over the window rows then columns, divided by kh then by kw.
void expand_prepool(const float* z, int C, int h, int w, float* out, int oh = 7, int ow = 7);

// The distinct pooling windows of one channel: window k covers rows [r0, r1) × cols [c0, c1);
// cell (i, j) of the oh × ow output uses window cell_window[i * ow + j]. Trainers use this to
// work on the distinct window means instead of the expanded vector.
struct PoolWindows {
  struct Window {
    int r0, r1, c0, c1;
  };
  std::vector<Window> windows;
  std::vector<int> cell_window;  // oh × ow
};
PoolWindows pool_windows(int h, int w, int oh = 7, int ow = 7);

}  // namespace vggcache
