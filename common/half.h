// IEEE 754 binary16 ("half") conversion for the f16 codecs (raw-f16, prepool-f16): float32 →
// half rounds to nearest, ties to even; half → float32 is exact. A portable scalar path defines
// the results; the F16C instructions are used for arrays only when the CPU has them, and give
// the same bits (tests/unit/test_half.cpp checks all 65,536 halves and the rounding edges).
#pragma once
#include <cstddef>
#include <cstdint>

namespace vggcache {

inline constexpr float kHalfMax = 65504.f;  // largest finite half

uint16_t float_to_half(float f);  // scalar; NaN stays NaN (quieted), ±inf stays ±inf
float half_to_float(uint16_t h);  // scalar, exact

// Arrays. `out`/`in` of halves need no alignment (the map gives 2-byte alignment only).
// floats_to_halves saturates finite values beyond ±65504 to ±65504 (a half would make them
// ±inf) and returns how many it saturated; ±inf and NaN pass through as ±inf and NaN.
size_t floats_to_halves(const float* in, size_t n, void* out);
void halves_to_floats(const void* in, size_t n, float* out);

// Which array path runs: true when this CPU has F16C (and the build targets x86-64).
bool half_uses_f16c();
// The two paths by name, for the test that they agree (the F16C ones need half_uses_f16c()).
size_t floats_to_halves_scalar(const float* in, size_t n, void* out);
void halves_to_floats_scalar(const void* in, size_t n, float* out);
size_t floats_to_halves_f16c(const float* in, size_t n, void* out);
void halves_to_floats_f16c(const void* in, size_t n, float* out);

}  // namespace vggcache
