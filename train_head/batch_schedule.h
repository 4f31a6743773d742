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

// --sampler balanced: as many items as epoch_items() gives (images, or images × crops with
// all_crops), each drawn independently with replacement so that every class present is equally
// likely: a class uniformly, then an image of it uniformly, then a crop uniformly (torch's
// WeightedRandomSampler with weights 1 / n_class per image). labels[i] is images[i]'s label.
// A pure function of (seed, epoch) like epoch_items().
// --order blocks: the same items as epoch_items() (the same crops), in an order that reads the
// cache in large sequential runs instead of one random record at a time (caches larger than
// memory, docs/scale.md). Records in key order, (image · crops + crop), are cut into blocks of
// `block_records` consecutive records; the blocks holding items are shuffled, taken
// `window_blocks` at a time, and the items of each window are shuffled among themselves. A
// different sampling from the uniform shuffle: two items of one window are more likely to share
// a batch, and the items of a window are visited within a stretch of the epoch. Both shuffles are
// drawn from (seed, epoch) like epoch_items()' shuffle, so the order is reproducible and
// independent of --threads. block_records and window_blocks must be >= 1.
std::vector<Item> block_epoch_items(const std::vector<uint32_t>& images, int crops, bool all_crops,
                                    uint64_t seed, int epoch, int block_records, int window_blocks);

std::vector<Item> balanced_epoch_items(const std::vector<uint32_t>& images,
                                       const std::vector<int32_t>& labels, int crops,
                                       bool all_crops, uint64_t seed, int epoch);

}  // namespace vggcache
