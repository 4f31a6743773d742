// SplitMix64 (Steele, Lea and Flood 2014), the one mixer behind every seeded draw: extract's crop
// streams (extract/transforms.cpp) and the head's Rng and counter hashes (head/rng.h). Pure
// integer functions; thread-safe.
#pragma once
#include <cstdint>

namespace vggcache {

// The state increment (2^64 / golden ratio, odd): a stream's i-th state is seed + i · gamma.
inline constexpr uint64_t kSplitMix64Gamma = 0x9E3779B97F4A7C15ull;

// SplitMix64's finaliser: a bijective, well-mixed 64-bit hash.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One SplitMix64 step from state `z`: the golden-ratio increment, then the finaliser.
inline uint64_t splitmix64(uint64_t z) {
  return mix64(z + kSplitMix64Gamma);
}

}  // namespace vggcache
