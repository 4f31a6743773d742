// Record encoding: a fixed 64-byte little-endian header followed by the payload floats.
// The header size is a multiple of 16 so payloads in LMDB overflow pages are 16-byte aligned.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/cache_meta.h"

namespace vggcache {

struct CropBox {
  int32_t x = 0, y = 0, w = 0, h = 0;  // crop rectangle in source pixels (left, top, width, height)
  bool flipped = false;                // horizontally flipped after the crop
};

struct RecordHeader {
  uint32_t image = 0;
  uint32_t crop = 0;
  int32_t label = 0;
  CropBox box;
  Codec codec = Codec::kRawF32;
  uint32_t payload_floats = 0;
};

inline constexpr size_t kRecordHeaderBytes = 64;
inline constexpr uint32_t kRecordMagic = 0x52434756;  // "VGCR"

// Key: big-endian image ‖ big-endian crop.
void encode_key(uint32_t image, uint32_t crop, unsigned char out[8]);
void decode_key(const void* key, size_t len, uint32_t* image, uint32_t* crop);  // throws kCorrupt

size_t record_bytes(uint32_t payload_floats);
// Writes header + payload + CRC32C into `out` (record_bytes(h.payload_floats) bytes).
void encode_record(const RecordHeader& h, const float* payload, void* out);
// Parses and (optionally) checks the CRC. Returns a pointer to the payload inside `buf`.
// Throws Error(kCorrupt) with `what` (e.g. "record (12, 3)") in the message on any problem.
const float* decode_record(const void* buf, size_t len, bool verify, RecordHeader* h,
                           const std::string& what);

}  // namespace vggcache
