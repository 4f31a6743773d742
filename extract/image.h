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

// Decodes `path` with OpenCV into what PIL 9.4's Image.open(path).convert("RGB") gives:
//   * grey expanded, palette expanded, alpha dropped (not composited), EXIF orientation NOT
//     applied (PIL does not apply it);
//   * 16-bit samples as PIL maps them: grey sources (mode I / I;16) clip to 255, colour PNG/TIFF
//     keep the high byte, PNM samples are rescaled by 255 / maxval (for any maxval != 255);
//   * CMYK/YCCK JPEGs: within 2 grey levels of PIL, not exact (OpenCV converts CMYK itself and
//     cannot hand out the raw samples; exactness would need libjpeg linked directly);
//   * JPEGs without an end-of-image marker are refused (PIL: "image file is truncated"); PNGs that
//     end cleanly after the last IDAT but lack IEND are decoded (PIL decodes them too); PNGs cut
//     inside a chunk are refused (PIL decodes the few whose pixel data happens to be complete).
// The pixel count is checked from the header (JPEG, PNG, BMP, PNM, WebP, TIFF) before decoding and
// again after. Throws Error(kBadImage, "<path>: <reason>") for an empty, truncated, undecodable,
// unrecognised, oversized or unreadable file (a dangling link, a directory). Thread-safe.
RgbImage decode_image(const std::string& path, const DecodeLimits& limits = {});

}  // namespace vggcache
