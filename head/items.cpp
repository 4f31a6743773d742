#include "head/items.h"

namespace vggcache {

std::vector<Item> all_items(const std::vector<uint32_t>& images, int crops) {
  std::vector<Item> items;
  items.reserve(images.size() * static_cast<size_t>(crops));
  for (uint32_t img : images)
    for (int c = 0; c < crops; ++c) items.push_back({img, static_cast<uint32_t>(c)});
  return items;
}

}  // namespace vggcache
