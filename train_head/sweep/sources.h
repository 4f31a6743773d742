// Feature sources a sweep shares between configurations trained at the same time.
//   ResidentSource: the vectors of a fixed image set (validation or test) copied into memory once,
//                   so every head evaluates from RAM instead of reading and decoding the cache
//                   again.
//   LockedSource:   one gather at a time over a source that is not reentrant (a CacheSource holds
//                   one LMDB read transaction per gather slot), for units training concurrently.
// Both return exactly the floats their base would, so results do not change.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

#include "head/feature_source.h"

namespace vggcache {

class ResidentSource : public FeatureSource {
 public:
  // Gathers every crop of `images` from base (unstandardised). Keeps base for labels only.
  ResidentSource(FeatureSource& base, const std::vector<uint32_t>& images);
  int dim() const override { return base_.dim(); }
  int crops() const override { return crops_; }
  const std::vector<uint32_t>& images() const override { return images_; }
  int32_t label(uint32_t image) const override { return base_.label(image); }
  // Thread-safe (reads only). Error(kInvalidArgument) for an image or crop not held.
  void gather(const Item* items, int n, const Standardizer* s, float* out) override;
  const CompactLayout* compact() const override { return base_.compact(); }

  // Bytes the vectors of `images` take in memory.
  static uint64_t bytes_for(const FeatureSource& base, size_t images);

 private:
  FeatureSource& base_;
  int crops_;
  std::vector<uint32_t> images_;
  std::vector<int64_t> row_of_;  // image → first row in data_, −1 when not held
  std::vector<float> data_;      // (images × crops) × dim
};

class LockedSource : public FeatureSource {
 public:
  explicit LockedSource(FeatureSource& base) : base_(base) {}
  int dim() const override { return base_.dim(); }
  int crops() const override { return base_.crops(); }
  const std::vector<uint32_t>& images() const override { return base_.images(); }
  int32_t label(uint32_t image) const override { return base_.label(image); }
  void gather(const Item* items, int n, const Standardizer* s, float* out) override;
  const CompactLayout* compact() const override { return base_.compact(); }

 private:
  FeatureSource& base_;
  std::mutex mutex_;
};

}  // namespace vggcache
