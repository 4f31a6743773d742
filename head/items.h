// Which stored vectors a pass reads: (image, crop) pairs of a cache. Evaluation reads every crop
// of its images (all_items); training draws its own per epoch (train_head/batch_schedule.h).
// Pure functions of their arguments; thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace vggcache {

struct Item {
  uint32_t image = 0;  // index into CacheMeta::images
  uint32_t crop = 0;
};

// All crops of the images, in (image, crop) order (evaluation: averaged per image).
std::vector<Item> all_items(const std::vector<uint32_t>& images, int crops);

}  // namespace vggcache
