#include "common/prepool.h"

#include <cstddef>
#include <map>
#include <tuple>

namespace vggcache {

void expand_prepool(const float* z, int C, int h, int w, float* out, int oh, int ow) {
  for (int c = 0; c < C; ++c) {
    const float* zc = z + static_cast<size_t>(c) * h * w;
    float* oc = out + static_cast<size_t>(c) * oh * ow;
    for (int i = 0; i < oh; ++i) {
      const int r0 = adaptive_start(i, oh, h), r1 = adaptive_end(i, oh, h);
      for (int j = 0; j < ow; ++j) {
        const int c0 = adaptive_start(j, ow, w), c1 = adaptive_end(j, ow, w);
        float sum = 0.f;
        for (int r = r0; r < r1; ++r)
          for (int q = c0; q < c1; ++q) sum += zc[r * w + q];
        oc[i * ow + j] = sum / static_cast<float>(r1 - r0) / static_cast<float>(c1 - c0);
      }
    }
  }
}

PoolWindows pool_windows(int h, int w, int oh, int ow) {
  PoolWindows pw;
  std::map<std::tuple<int, int, int, int>, int> index;
  for (int i = 0; i < oh; ++i)
    for (int j = 0; j < ow; ++j) {
      auto key = std::make_tuple(adaptive_start(i, oh, h), adaptive_end(i, oh, h),
                                 adaptive_start(j, ow, w), adaptive_end(j, ow, w));
      auto it = index.find(key);
      if (it == index.end()) {
        it = index.emplace(key, static_cast<int>(pw.windows.size())).first;
        pw.windows.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key),
                              std::get<3>(key)});
      }
      pw.cell_window.push_back(it->second);
    }
  return pw;
}

}  // namespace vggcache
