// Writes a synthetic feature cache of any size (Gaussian clusters per class through CacheWriter,
// tests/train/train_fixtures.h) for the tests and the benchmark that train from caches larger
// than the memory they may use (tests/scale/test_scale_cgroup.sh, bench/scale_bench.sh).
// Usage: scale_cache_writer DIR DIM IMAGES_PER_CLASS CROPS SEED [CODEC]  (CODEC: raw-f32, the
// default, or raw-f16: half the bytes per record)
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/cache_meta.h"
#include "common/error.h"
#include "train_fixtures.h"

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) {
    std::fprintf(stderr, "usage: scale_cache_writer DIR DIM IMAGES_PER_CLASS CROPS SEED [CODEC]\n");
    return 2;
  }
  vggcache::testing::SyntheticSpec spec;
  spec.dim = std::atoi(argv[2]);
  spec.images_per_class = std::atoi(argv[3]);
  spec.crops = std::atoi(argv[4]);
  spec.seed = std::strtoull(argv[5], nullptr, 10);
  if (spec.dim < 1 || spec.images_per_class < 1 || spec.crops < 1) {
    std::fprintf(stderr, "scale_cache_writer: DIM, IMAGES_PER_CLASS and CROPS must be >= 1\n");
    return 2;
  }
  // Classes close enough that the head has something to learn (at D = 25088 unit separation
  // makes them trivially apart).
  spec.separation = 0.05f;
  try {
    if (argc == 7) spec.codec = vggcache::codec_from_name(argv[6]);
    const vggcache::CacheMeta meta = vggcache::testing::make_synthetic_cache(argv[1], spec);
    std::printf("%s: %llu records of %d floats\n", argv[1],
                static_cast<unsigned long long>(meta.records), spec.dim);
  } catch (const vggcache::Error& e) {
    std::fprintf(stderr, "scale_cache_writer: %s\n", e.what());
    return 1;
  }
  return 0;
}
