// prepool-f32 expansion against torch.nn.functional.adaptive_avg_pool2d (contiguous and
// channels-last inputs), and the distinct-window structure.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "common/prepool.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::ulp_distance;

TEST(Prepool, WindowsAt64PixelsAreThreeByThree) {
  PoolWindows pw = pool_windows(2, 2);
  EXPECT_EQ(pw.windows.size(), 9u);  // 512 × 9 = 4,608 distinct values per vector
  EXPECT_EQ(pool_windows(1, 1).windows.size(), 1u);
  EXPECT_EQ(pool_windows(7, 7).windows.size(), 49u);  // 224 px: pooling is the identity
  EXPECT_EQ(pool_windows(3, 3).windows.size(), 25u);
  EXPECT_EQ(pool_windows(4, 4).windows.size(), 49u);
}

TEST(Prepool, ExpansionEqualsTorchAdaptiveAvgPool) {
  testing::TempDir tmp;
  const int C = 512;
  const std::vector<int> sizes = {1, 2, 3, 4, 5, 7, 9};
  std::string py = R"PY(
import sys, numpy as np, torch
C, d = int(sys.argv[1]), sys.argv[2]
torch.set_num_threads(1)
for s in map(int, sys.argv[3:]):
    torch.manual_seed(s)
    z = (torch.randn(2, C, s, s) * 3).relu()      # like VGG's ReLU-ed maps: ties and zeros
    z.numpy().astype(np.float32).tofile(f"{d}/z{s}")
    a = torch.nn.functional.adaptive_avg_pool2d(z, (7, 7))
    b = torch.nn.functional.adaptive_avg_pool2d(z.contiguous(memory_format=torch.channels_last), (7, 7))
    a.reshape(2, -1).numpy().tofile(f"{d}/z{s}.nchw")
    b.contiguous().reshape(2, -1).numpy().tofile(f"{d}/z{s}.nhwc")
)PY";
  testing::write_file(tmp / "pool.py", py);
  std::string cmd =
      testing::python() + " " + (tmp / "pool.py") + " " + std::to_string(C) + " " + tmp.path();
  for (int s : sizes) cmd += " " + std::to_string(s);
  std::string out;
  ASSERT_EQ(testing::run_command(cmd, &out), 0) << out;
  const size_t per = static_cast<size_t>(C) * 49;
  for (int s : sizes) {
    std::string z = tmp / ("z" + std::to_string(s));
    std::string zb = testing::read_file(z), an = testing::read_file(z + ".nchw"),
                ah = testing::read_file(z + ".nhwc");
    ASSERT_EQ(an.size(), 2 * per * 4);
    std::vector<float> mine(per);
    int worst = 0;
    for (int n = 0; n < 2; ++n) {
      expand_prepool(reinterpret_cast<const float*>(zb.data()) + n * C * s * s, C, s, s,
                     mine.data());
      const float* ref_nchw = reinterpret_cast<const float*>(an.data()) + n * per;
      const float* ref_nhwc = reinterpret_cast<const float*>(ah.data()) + n * per;
      for (size_t i = 0; i < per; ++i) {
        worst = std::max(worst, ulp_distance(mine[i], ref_nchw[i]));
        worst = std::max(worst, ulp_distance(mine[i], ref_nhwc[i]));
      }
    }
    EXPECT_LE(worst, 1) << "map " << s << "x" << s;
    std::printf("map %dx%d: worst difference %d ulp\n", s, s, worst);
  }
}

}  // namespace
}  // namespace vggcache
