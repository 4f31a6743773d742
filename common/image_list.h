// The image list of a schema 3 cache (key "images" of the "meta" sub-database), in binary.
//
// Why binary: as JSON the list cost ~131 bytes an image for carbike64's names ("bicycle/
// bicycle_0001.jpg", a 64-digit SHA-256, the size and the label), 3.2% of a 4 KB 1-view
// prepool-f16 record. Here an entry is ~40 bytes: consecutive paths (sorted within each class
// folder) share most of their bytes, so each path is stored as the bytes it shares with the
// previous path's start and end plus the bytes in between; the SHA-256 as its 32 bytes; sizes and
// labels as varints. The 32 SHA-256 bytes are most of what is left and do not compress.
//
// Layout: "VGIL" ‖ u8 format (1) ‖ varint count ‖ count entries ‖ u32 LE CRC-32C of everything
// before it. An entry: varint prefix (bytes shared with the start of the previous path) ‖ varint
// suffix (bytes shared with its end, after the prefix) ‖ varint n ‖ n middle bytes ‖ varint file
// size ‖ u8 digest kind (0: no digest; 1: 32 bytes, the 64-digit lowercase hex SHA-256; 2: varint
// n ‖ n bytes, any other string) ‖ varint label (as u32). Varints are LEB128 (7 bits a byte, low
// first). Paths are bytes (non-UTF-8 names need no escaping here).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "common/cache_meta.h"

namespace vggcache {

inline constexpr char kImageListMagic[4] = {'V', 'G', 'I', 'L'};
inline constexpr unsigned char kImageListFormat = 1;

std::string encode_image_list(const std::vector<ImageEntry>& images);

// Throws Error(kCorrupt) saying what is wrong (bad magic or format, truncated, checksum, an
// entry that does not fit its neighbour); the caller adds which cache.
std::vector<ImageEntry> decode_image_list(const void* data, size_t size);

}  // namespace vggcache
