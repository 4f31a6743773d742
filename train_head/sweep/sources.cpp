#include "train_head/sweep/sources.h"

#include <fmt/format.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>

#include "common/error.h"

namespace vggcache {

ResidentSource::ResidentSource(FeatureSource& base, const std::vector<uint32_t>& images)
    : base_(base), crops_(base.crops()), images_(images) {
  const int d = base.dim();
  uint32_t top = 0;
  for (uint32_t img : images) top = std::max(top, img + 1);
  row_of_.assign(top, -1);
  for (size_t i = 0; i < images.size(); ++i) row_of_[images[i]] = static_cast<int64_t>(i) * crops_;
  const std::vector<Item> items = all_items(images, crops_);
  data_.resize(items.size() * static_cast<size_t>(d));
  // In chunks, as evaluation gathers, so a base with per-call scratch stays small.
  constexpr size_t kChunk = 512;
  for (size_t i = 0; i < items.size(); i += kChunk) {
    const int n = static_cast<int>(std::min(kChunk, items.size() - i));
    base.gather(items.data() + i, n, nullptr, data_.data() + i * d);
  }
}

uint64_t ResidentSource::bytes_for(const FeatureSource& base, size_t images) {
  return static_cast<uint64_t>(images) * base.crops() * base.dim() * sizeof(float);
}

void ResidentSource::gather(const Item* items, int n, const Standardizer* s, float* out) {
  const int d = dim();
  tbb::parallel_for(tbb::blocked_range<int>(0, n, 8), [&](const tbb::blocked_range<int>& r) {
    for (int i = r.begin(); i != r.end(); ++i) {
      const Item& it = items[i];
      if (it.image >= row_of_.size() || row_of_[it.image] < 0 ||
          it.crop >= static_cast<uint32_t>(crops_))
        throw Error(ErrorKind::kInvalidArgument,
                    fmt::format("resident vectors hold no image {} crop {}", it.image, it.crop));
      const float* row = data_.data() + static_cast<size_t>(row_of_[it.image] + it.crop) * d;
      copy_vector(row, d, s, out + static_cast<size_t>(i) * d);
    }
  });
}

void LockedSource::gather(const Item* items, int n, const Standardizer* s, float* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Isolated: while its own parallel gather waits, this thread must not pick up another unit's
  // task that would gather too and block on the mutex this thread holds.
  tbb::this_task_arena::isolate([&] { base_.gather(items, n, s, out); });
}

}  // namespace vggcache
