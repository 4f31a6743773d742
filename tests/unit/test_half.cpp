// The half conversion (common/half.h) against the format's definition: every one of the 65,536
// halves decodes to the value its bits define and encodes back to itself; rounding of floats
// between halves is to nearest, ties to even; the F16C path gives the scalar path's bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common/half.h"
#include "common/splitmix64.h"

using namespace vggcache;

namespace {

// The value a half's bits define: (-1)^s × 2^(e-15) × 1.m, or 2^-14 × 0.m for e = 0.
double half_value(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
  return s ? -v : v;
}

uint32_t bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
}

std::vector<uint16_t> all_halves() {
  std::vector<uint16_t> h(65536);
  for (uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<uint16_t>(i);
  return h;
}

}  // namespace

TEST(Half, EveryHalfDecodesToItsValueAndEncodesBack) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(i);
    const float f = half_to_float(h);
    const int e = (h >> 10) & 0x1f;
    if (e == 0x1f) {
      if (h & 0x3ff) {
        EXPECT_TRUE(std::isnan(f)) << i;
        EXPECT_EQ(float_to_half(f), h | 0x200) << i;  // quieted
      } else {
        EXPECT_TRUE(std::isinf(f)) << i;
        EXPECT_EQ(float_to_half(f), h) << i;
      }
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), half_value(h)) << i;
    ASSERT_EQ(float_to_half(f), h) << i;
  }
}

TEST(Half, RoundsToNearestTiesToEven) {
  for (uint32_t i = 0; i < 0x7bff; ++i) {  // each pair of adjacent positive finite halves
    const auto lo = static_cast<uint16_t>(i), hi = static_cast<uint16_t>(i + 1);
    const double a = half_value(lo), b = half_value(hi), mid = (a + b) / 2;
    const float fmid = static_cast<float>(mid);  // exact: a half's midpoint needs 12 bits
    ASSERT_EQ(static_cast<double>(fmid), mid);
    const uint16_t even = (lo & 1) ? hi : lo;
    ASSERT_EQ(float_to_half(fmid), even) << i;
    ASSERT_EQ(float_to_half(-fmid), even | 0x8000) << i;
    ASSERT_EQ(float_to_half(std::nextafter(fmid, 0.f)), lo) << i;
    ASSERT_EQ(float_to_half(std::nextafter(fmid, 1e9f)), hi) << i;
  }
  // Beyond the largest half: 65520 (the midpoint to the next power) and up round to inf.
  EXPECT_EQ(float_to_half(65519.f), 0x7bff);
  EXPECT_EQ(float_to_half(65520.f), 0x7c00);
  EXPECT_EQ(float_to_half(-1e30f), 0xfc00);
  // Below the smallest subnormal 2^-24: half of it ties to zero (even), just over to 2^-24.
  EXPECT_EQ(float_to_half(std::ldexp(1.f, -25)), 0);
  EXPECT_EQ(float_to_half(std::nextafter(std::ldexp(1.f, -25), 1.f)), 1);
  EXPECT_EQ(float_to_half(std::ldexp(3.f, -25)), 2);  // 1.5 × 2^-24 ties to 2 (even)
  EXPECT_EQ(float_to_half(1e-40f), 0);                // a float subnormal
  EXPECT_EQ(float_to_half(-0.f), 0x8000);
}

TEST(Half, ArraysSaturateBeyondTheRangeAndCountThem) {
  const std::vector<float> in{1.f, 65504.f, 65505.f, -7e4f, INFINITY, -INFINITY, NAN, 3e38f, 0.5f};
  std::vector<uint16_t> out(in.size());
  EXPECT_EQ(floats_to_halves(in.data(), in.size(), out.data()), 3u);
  const std::vector<uint16_t> want{0x3c00, 0x7bff, 0x7bff, 0xfbff, 0x7c00,
                                   0xfc00, 0,      0x7bff, 0x3800};
  for (size_t i = 0; i < in.size(); ++i) {
    if (i == 6) {
      EXPECT_EQ(out[i] & 0x7e00, 0x7e00);  // a quiet NaN
      continue;
    }
    EXPECT_EQ(out[i], want[i]) << i;
  }
}

TEST(Half, F16cPathGivesTheScalarBits) {
  if (!half_uses_f16c()) GTEST_SKIP() << "this CPU has no F16C; the scalar path is the only one";
  const std::vector<uint16_t> h = all_halves();
  std::vector<float> a(h.size()), b(h.size());
  halves_to_floats_scalar(h.data(), h.size(), a.data());
  halves_to_floats_f16c(h.data(), h.size(), b.data());
  for (size_t i = 0; i < h.size(); ++i) ASSERT_EQ(bits(a[i]), bits(b[i])) << i;
  // Floats: every decoded half, each midpoint and its neighbours, edge values, random bits.
  std::vector<float> f;
  for (size_t i = 0; i < h.size(); ++i) {
    f.push_back(a[i]);
    if (i + 1 < h.size() && std::isfinite(a[i]) && std::isfinite(a[i + 1]) &&
        (i & 0x7fff) != 0x7fff) {
      const float mid = static_cast<float>((double{a[i]} + a[i + 1]) / 2);
      f.insert(f.end(), {mid, std::nextafter(mid, 0.f), std::nextafter(mid, 2 * mid)});
    }
  }
  f.insert(f.end(), {65519.f, 65520.f, 1e-40f, -1e-45f, 3e38f, -0.f, std::ldexp(1.f, -25),
                     std::ldexp(3.f, -25), INFINITY, -INFINITY, NAN});
  for (uint64_t i = 0; i < 200000; ++i) {
    const auto x = static_cast<uint32_t>(splitmix64(i));
    float v;
    std::memcpy(&v, &x, 4);
    f.push_back(v);
  }
  std::vector<uint16_t> hs(f.size()), hv(f.size());
  EXPECT_EQ(floats_to_halves_scalar(f.data(), f.size(), hs.data()),
            floats_to_halves_f16c(f.data(), f.size(), hv.data()));
  for (size_t i = 0; i < f.size(); ++i) ASSERT_EQ(hs[i], hv[i]) << i << " " << f[i];
}
