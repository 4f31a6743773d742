#include "train_head/batch_schedule.h"

#include <algorithm>
#include <cmath>

#include "head/rng.h"

namespace vggcache {

ImageSplit split_images(const std::vector<uint32_t>& images, double fraction, uint64_t seed) {
  ImageSplit s;
  size_t n = images.size();
  size_t n_val = static_cast<size_t>(std::llround(fraction * static_cast<double>(n)));
  if (fraction > 0.0 && n_val == 0 && n >= 2) n_val = 1;
  if (n_val >= n) n_val = n > 0 ? n - 1 : 0;
  std::vector<uint32_t> perm = images;
  Rng rng(seed, Stream::kSplit);
  shuffle_in_place(perm.data(), perm.size(), rng);
  s.val.assign(perm.begin(), perm.begin() + n_val);
  s.train.assign(perm.begin() + n_val, perm.end());
  std::sort(s.val.begin(), s.val.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

std::vector<Item> epoch_items(const std::vector<uint32_t>& images, int crops, bool all_crops,
                              uint64_t seed, int epoch) {
  std::vector<Item> items;
  if (all_crops) {
    items = all_items(images, crops);
  } else {
    items.reserve(images.size());
    Rng crop_rng(seed, Stream::kCrop, static_cast<uint64_t>(epoch));
    for (uint32_t img : images)
      items.push_back({img, static_cast<uint32_t>(crop_rng.below(static_cast<uint64_t>(crops)))});
  }
  Rng shuffle_rng(seed, Stream::kShuffle, static_cast<uint64_t>(epoch));
  shuffle_in_place(items.data(), items.size(), shuffle_rng);
  return items;
}

}  // namespace vggcache
