#include "train_head/batch_schedule.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "common/error.h"
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

namespace {

// The epoch's items in key order: every crop, or one drawn per image from (seed, epoch).
std::vector<Item> epoch_draw(const std::vector<uint32_t>& images, int crops, bool all_crops,
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
  return items;
}

}  // namespace

std::vector<Item> epoch_items(const std::vector<uint32_t>& images, int crops, bool all_crops,
                              uint64_t seed, int epoch) {
  std::vector<Item> items = epoch_draw(images, crops, all_crops, seed, epoch);
  Rng shuffle_rng(seed, Stream::kShuffle, static_cast<uint64_t>(epoch));
  shuffle_in_place(items.data(), items.size(), shuffle_rng);
  return items;
}

std::vector<Item> block_epoch_items(const std::vector<uint32_t>& images, int crops, bool all_crops,
                                    uint64_t seed, int epoch, int block_records,
                                    int window_blocks) {
  if (block_records < 1 || window_blocks < 1)
    throw Error(ErrorKind::kInvalidArgument,
                "block_epoch_items: block_records and window_blocks must be >= 1");
  // `images` is sorted (split_images), so the draw is in key order and each block's items are
  // one contiguous run of it.
  const std::vector<Item> drawn = epoch_draw(images, crops, all_crops, seed, epoch);
  auto block_of = [&](const Item& it) {
    return (static_cast<uint64_t>(it.image) * static_cast<uint64_t>(crops) + it.crop) /
           static_cast<uint64_t>(block_records);
  };
  std::vector<std::pair<size_t, size_t>> runs;  // [begin, end) of `drawn`, one per block
  for (size_t i = 0; i < drawn.size();) {
    size_t j = i + 1;
    while (j < drawn.size() && block_of(drawn[j]) == block_of(drawn[i])) ++j;
    runs.emplace_back(i, j);
    i = j;
  }
  Rng rng(seed, Stream::kShuffle, static_cast<uint64_t>(epoch));
  shuffle_in_place(runs.data(), runs.size(), rng);
  std::vector<Item> items;
  items.reserve(drawn.size());
  for (size_t w = 0; w < runs.size(); w += static_cast<size_t>(window_blocks)) {
    const size_t first = items.size();
    const size_t end = std::min(runs.size(), w + static_cast<size_t>(window_blocks));
    for (size_t r = w; r < end; ++r)
      items.insert(items.end(), drawn.begin() + runs[r].first, drawn.begin() + runs[r].second);
    shuffle_in_place(items.data() + first, items.size() - first, rng);
  }
  return items;
}

std::vector<Item> balanced_epoch_items(const std::vector<uint32_t>& images,
                                       const std::vector<int32_t>& labels, int crops,
                                       bool all_crops, uint64_t seed, int epoch) {
  if (labels.size() != images.size())
    throw Error(ErrorKind::kInvalidArgument, "balanced_epoch_items: one label per image needed");
  std::map<int32_t, std::vector<uint32_t>> by_class;  // ordered: the draw depends on labels only
  for (size_t i = 0; i < images.size(); ++i) by_class[labels[i]].push_back(images[i]);
  std::vector<const std::vector<uint32_t>*> classes;
  for (const auto& kv : by_class) classes.push_back(&kv.second);
  const size_t n = images.size() * (all_crops ? static_cast<size_t>(crops) : 1);
  std::vector<Item> items;
  items.reserve(n);
  Rng rng(seed, Stream::kBalancedSample, static_cast<uint64_t>(epoch));
  for (size_t i = 0; i < n; ++i) {
    const std::vector<uint32_t>& members = *classes[rng.below(classes.size())];
    const uint32_t img = members[rng.below(members.size())];
    items.push_back({img, static_cast<uint32_t>(rng.below(static_cast<uint64_t>(crops)))});
  }
  return items;
}

}  // namespace vggcache
