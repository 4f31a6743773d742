// Deterministic random numbers of our own, so runs are reproducible from --seed alone, on any
// machine and with any --threads (std:: distributions differ between standard libraries).
//   Rng: a sequential SplitMix64 stream, for work done in order (init, shuffles, splits).
//   hash_key(): a counter-based draw, for work done in parallel (dropout masks): the value depends
//   only on its key, never on which thread computes it or when.
#pragma once
#include <cstdint>

#include "common/splitmix64.h"  // mix64, kSplitMix64Gamma

namespace vggcache {

// Hash of a tuple of counters; each step re-mixes so (a, b) and (b, a) differ. For many keys
// that share (a, b, c), hash_key_prefix() once and hash_key_last() per d give the same values.
inline uint64_t hash_key_prefix(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t h = mix64(a + 0x9E3779B97F4A7C15ull);
  h = mix64(h ^ (b + 0x632BE59BD9B4E019ull));
  return mix64(h ^ (c + 0x85157AF5ull));
}
inline uint64_t hash_key_last(uint64_t prefix, uint64_t d) {
  return mix64(prefix ^ (d + 0x2545F4914F6CDD1Dull));
}
inline uint64_t hash_key(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0) {
  return hash_key_last(hash_key_prefix(a, b, c), d);
}

// Uniform float in [0, 1) from the top 24 bits (exactly representable).
inline float unit_float(uint64_t bits) {
  return static_cast<float>(bits >> 40) * 0x1.0p-24f;
}

// Purposes of the streams drawn from --seed; distinct so e.g. the val split and the shuffle of
// epoch 0 are unrelated.
enum class Stream : uint64_t {
  kInit = 1,
  kSplit = 2,
  kCrop = 3,
  kShuffle = 4,
  kDropout = 5,
  kBalancedSample = 6
};

class Rng {
 public:
  Rng(uint64_t seed, Stream stream, uint64_t sub = 0)
      : state_(hash_key(seed, static_cast<uint64_t>(stream), sub)) {}
  uint64_t next() { return mix64(state_ += kGolden); }
  // The stream is a counter (SplitMix64), so draw i ahead is known without the ones before it:
  // peek(i) is what the (i+1)-th next() from here returns, and discard(n) skips n draws. A long
  // fill can then run in parallel and give the same numbers as a sequential one.
  uint64_t peek(uint64_t i) const { return mix64(state_ + (i + 1) * kGolden); }
  void discard(uint64_t n) { state_ += n * kGolden; }
  // Uniform integer in [0, n) without modulo bias (Lemire's multiply-shift with rejection).
  uint64_t below(uint64_t n) {
    for (;;) {
      unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
      uint64_t low = static_cast<uint64_t>(m);
      if (low >= n || low >= (-n) % n) return static_cast<uint64_t>(m >> 64);
    }
  }
  float uniform() { return unit_float(next()); }  // [0, 1)

 private:
  static constexpr uint64_t kGolden = kSplitMix64Gamma;
  uint64_t state_;
};

// Fisher–Yates with our Rng: the same permutation everywhere.
template <typename T>
void shuffle_in_place(T* v, size_t n, Rng& rng) {
  for (size_t i = n; i > 1; --i) {
    size_t j = rng.below(i);
    T tmp = v[i - 1];
    v[i - 1] = v[j];
    v[j] = tmp;
  }
}

}  // namespace vggcache
