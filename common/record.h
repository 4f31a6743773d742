// Record encoding: a fixed 64-byte little-endian header followed by the payload values (float32,
// or IEEE halves for the f16 codecs). The header size is a multiple of 16 so payloads in LMDB
// overflow pages are 16-byte aligned.
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
  uint32_t payload_floats = 0;  // values stored (floats, or halves for the f16 codecs)
};

inline constexpr size_t kRecordHeaderBytes = 64;
inline constexpr uint32_t kRecordMagic = 0x52434756;  // "VGCR"

// Key: big-endian image ‖ big-endian crop.
void encode_key(uint32_t image, uint32_t crop, unsigned char out[8]);
void decode_key(const void* key, size_t len, uint32_t* image, uint32_t* crop);  // throws kCorrupt

size_t record_bytes(uint32_t payload_floats);  // a float32 codec's record
size_t record_bytes(Codec codec, uint32_t payload_values);
// Writes header + payload + CRC32C into `out` (record_bytes(h.codec, h.payload_floats) bytes).
// `payload` holds h.payload_floats floats; an f16 codec stores each as a half, saturating finite
// values beyond ±65504 (returns how many; 0 for float32 codecs).
size_t encode_record(const RecordHeader& h, const float* payload, void* out);
// Parses and (optionally) checks the CRC. Returns a pointer to the stored payload inside `buf`
// (floats, or halves for an f16 codec). Throws Error(kCorrupt) with `what` (e.g.
// "record (12, 3)") in the message on any problem.
const void* decode_record(const void* buf, size_t len, bool verify, RecordHeader* h,
                          const std::string& what);
// The codec of an encoded record (bytes 6..7), for sizing before a full decode.
Codec peek_record_codec(const void* buf);

}  // namespace vggcache
