// Schema 3's binary image list (common/image_list.h): any bytes must decode or raise
// vggcache::Error, and what decodes must encode back to bytes that decode to the same list.
// The input is taken as the list without its CRC-32C, which is appended here: otherwise nearly
// every mutation would stop at the checksum and the entries' parsing would go unexplored.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/crc32c.h"
#include "common/error.h"
#include "common/image_list.h"

namespace {

bool same(const std::vector<vggcache::ImageEntry>& a, const std::vector<vggcache::ImageEntry>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].path != b[i].path || a[i].bytes != b[i].bytes || a[i].sha256 != b[i].sha256 ||
        a[i].label != b[i].label)
      return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string buf(reinterpret_cast<const char*>(data), size);
  const uint32_t crc = vggcache::crc32c(buf.data(), buf.size());
  for (int i = 0; i < 4; ++i) buf.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  std::vector<vggcache::ImageEntry> list;
  try {
    list = vggcache::decode_image_list(buf.data(), buf.size());
  } catch (const vggcache::Error&) {
    return 0;
  }
  const std::string again = vggcache::encode_image_list(list);
  if (!same(vggcache::decode_image_list(again.data(), again.size()), list)) std::abort();
  return 0;
}
