#include "common/half.h"

#include <cmath>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "common/error.h"

namespace vggcache {
namespace {

uint32_t bits_of(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
}
float float_of(uint32_t x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// Finite values that would round to ±inf (|x| ≥ 65520) become ±65504; counted by the caller.
float saturate(float v, size_t* count) {
  if (std::isfinite(v) && std::fabs(v) > kHalfMax) {
    ++*count;
    return std::copysign(kHalfMax, v);
  }
  return v;
}

}  // namespace

uint16_t float_to_half(float f) {
  const uint32_t x = bits_of(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u)  // NaN: quiet it, keep the top payload bits (as F16C does)
    return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // ≥ 65520 rounds to inf (and inf stays inf)
  if (ax >= 0x38800000u) {                       // ≥ 2^-14: a normal half
    // Rebias the exponent (127 → 15) and round the 23-bit mantissa to 10 bits, ties to even; a
    // carry out of the mantissa correctly bumps the exponent.
    uint32_t r = ax - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return static_cast<uint16_t>(sign | (r >> 13));
  }
  // Below 2^-14: a subnormal half, q × 2^-24. The float is m × 2^(e-150) (m with its implicit
  // bit), so q = m / 2^(126-e), rounded to nearest even.
  const uint32_t e = ax >> 23;
  if (e < 102) return sign;  // < 2^-25: rounds to zero (float subnormals included)
  const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
  const uint32_t s = 126 - e;  // 14..24
  uint32_t q = m >> s;
  const uint32_t rem = m & ((1u << s) - 1), half = 1u << (s - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal
  return static_cast<uint16_t>(sign | q);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  if (e == 0x1f) return float_of(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0));
  if (e != 0) return float_of(sign | ((e + 112) << 23) | (m << 13));
  if (m == 0) return float_of(sign);
  // Subnormal m × 2^-24: shift the leading one up to the implicit bit.
  uint32_t shift = 0;
  while (!(m & 0x400u)) {
    m <<= 1;
    ++shift;
  }
  return float_of(sign | ((113 - shift) << 23) | ((m & 0x3ffu) << 13));
}

size_t floats_to_halves_scalar(const float* in, size_t n, void* out) {
  auto* o = static_cast<unsigned char*>(out);
  size_t saturated = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = float_to_half(saturate(in[i], &saturated));
    std::memcpy(o + 2 * i, &h, 2);  // the format is little-endian, as this host
  }
  return saturated;
}

void halves_to_floats_scalar(const void* in, size_t n, float* out) {
  const auto* p = static_cast<const unsigned char*>(in);
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    out[i] = half_to_float(h);
  }
}

#if defined(__x86_64__)
__attribute__((target("avx,f16c"))) size_t floats_to_halves_f16c(const float* in, size_t n,
                                                                 void* out) {
  auto* o = static_cast<unsigned char*>(out);
  size_t saturated = 0;
  size_t i = 0;
  const __m256 lim = _mm256_set1_ps(kHalfMax);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(in + i);
    const __m256 a = _mm256_and_ps(v, abs_mask);
    // Finite and beyond the half range (NaN compares false, inf is excluded by < inf).
    const __m256 over = _mm256_and_ps(_mm256_cmp_ps(a, lim, _CMP_GT_OQ),
                                      _mm256_cmp_ps(a, _mm256_set1_ps(INFINITY), _CMP_LT_OQ));
    const int mask = _mm256_movemask_ps(over);
    if (mask) {
      saturated += static_cast<size_t>(__builtin_popcount(mask));
      const __m256 clamped = _mm256_or_ps(_mm256_andnot_ps(abs_mask, v), lim);  // ±65504
      v = _mm256_blendv_ps(v, clamped, over);
    }
    const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 2 * i), h);
  }
  for (; i < n; ++i) {
    const float v = saturate(in[i], &saturated);
    const uint16_t h = static_cast<uint16_t>(
        _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(v), _MM_FROUND_TO_NEAREST_INT), 0));
    std::memcpy(o + 2 * i, &h, 2);
  }
  return saturated;
}

__attribute__((target("avx,f16c"))) void halves_to_floats_f16c(const void* in, size_t n,
                                                               float* out) {
  const auto* p = static_cast<const unsigned char*>(in);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i))));
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    out[i] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
  }
}

// CPUID leaf 1: F16C (ECX bit 29) and AVX (bit 28), usable only when the OS saves the YMM
// state (OSXSAVE, bit 27, and XCR0 bits 1–2). Read directly: Clang 14's __builtin_cpu_supports
// does not know "f16c".
bool half_uses_f16c() {
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool f16c = (c >> 29) & 1, avx = (c >> 28) & 1, osxsave = (c >> 27) & 1;
    if (!(f16c && avx && osxsave)) return false;
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0x6) == 0x6;
  }();
  return has;
}
#else
size_t floats_to_halves_f16c(const float*, size_t, void*) {
  throw Error(ErrorKind::kInvalidArgument, "F16C is not available in this build");
}
void halves_to_floats_f16c(const void*, size_t, float*) {
  throw Error(ErrorKind::kInvalidArgument, "F16C is not available in this build");
}
bool half_uses_f16c() {
  return false;
}
#endif

size_t floats_to_halves(const float* in, size_t n, void* out) {
  return half_uses_f16c() ? floats_to_halves_f16c(in, n, out) : floats_to_halves_scalar(in, n, out);
}

void halves_to_floats(const void* in, size_t n, float* out) {
  if (half_uses_f16c())
    halves_to_floats_f16c(in, n, out);
  else
    halves_to_floats_scalar(in, n, out);
}

}  // namespace vggcache
