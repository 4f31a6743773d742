// Image decoding to what torchvision's ImageFolder loader (PIL .convert("RGB")) produces.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vggcache {

// An 8-bit RGB image, rows top to bottom, pixels interleaved R,G,B. Owns its pixels.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // height × width × 3
};

struct DecodeLimits {
  // PIL's decompression-bomb guard: Image.MAX_IMAGE_PIXELS = 89,478,485; PIL errors above 2×.
  uint64_t max_pixels = 2ull * 89478485ull;
};

// Decodes `path` with OpenCV: grayscale expanded, alpha dropped, 16-bit scaled to 8-bit, CMYK
// converted, EXIF orientation NOT applied (PIL does not apply it). The pixel count is checked from
// the header before the full decode. Throws Error(kBadImage, "<path>: <reason>") for an empty,
// truncated, undecodable, oversized or unreadable file (a dangling link, a directory).
// Thread-safe.
RgbImage decode_image(const std::string& path, const DecodeLimits& limits = {});

}  // namespace vggcache
