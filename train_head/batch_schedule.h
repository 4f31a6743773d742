// Which vectors each epoch sees, in which order, and which images are held out for validation.
// Everything is a pure function of (seed, epoch), so a run is reproducible and independent of
// --threads; the augmentation is reproduced from the cache by drawing one cached crop per image
// per epoch, as an on-the-fly RandomResizedCrop would give a fresh view each epoch.
#pragma once
#include <cstdint>
#include <vector>

#include "head/items.h"  // Item, all_items

namespace vggcache {

struct ImageSplit {
  std::vector<uint32_t> train;  // sorted
  std::vector<uint32_t> val;    // sorted
};

// Holds out round(fraction · n) images (at least 1 when fraction > 0 and n >= 2, never all of
// them), chosen by a seeded permutation. Whole images move, so all their crops stay on one side.
ImageSplit split_images(const std::vector<uint32_t>& images, double fraction, uint64_t seed);

// The epoch's items: one crop per image drawn from (seed, epoch, image), or every crop with
// all_crops; then shuffled from (seed, epoch).
std::vector<Item> epoch_items(const std::vector<uint32_t>& images, int crops, bool all_crops,
                              uint64_t seed, int epoch);

}  // namespace vggcache
