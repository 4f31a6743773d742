// JPEG decoding with libjpeg alone, for builds without OpenCV (VGGCACHE_IMAGE_DECODER=libjpeg:
// the extract-only build scripts/gpu-check.sh makes on a machine without Debian's packages).
#pragma once
#include <string>

#include "extract/image.h"

namespace vggcache {

// Decodes a whole JPEG file's bytes into RGB as OpenCV's imdecode + the grey expansion of
// decode_image() do: the same libjpeg, default IDCT and upsampling, grey expanded. CMYK/YCCK
// JPEGs are refused. Throws Error(kBadImage, "<path>: <reason>").
RgbImage decode_jpeg_libjpeg(const std::string& data, const std::string& path);

}  // namespace vggcache
