// Record layout (little-endian, 64 bytes, then payload):
//   0 magic u32 | 4 format u16 | 6 codec u16 | 8 image u32 | 12 crop u32 | 16 label i32
//  20 x i32 | 24 y i32 | 28 w i32 | 32 h i32 | 36 flipped u8 | 37..39 zero | 40 payload_floats u32
//  44 crc32c u32 (over the whole record with this field zero) | 48..63 zero
#include "common/record.h"

#include <cstring>

#include "common/crc32c.h"
#include "common/error.h"
#include "common/half.h"

namespace vggcache {
namespace {

constexpr uint16_t kRecordFormat = 1;
constexpr size_t kCrcOffset = 44;

void put_u32(uint8_t* p, uint32_t v) {
  std::memcpy(p, &v, 4);
}  // x86/ARM LE: the format is LE
uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
void put_u16(uint8_t* p, uint16_t v) {
  std::memcpy(p, &v, 2);
}
uint16_t get_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "record format assumes little-endian");

}  // namespace

void encode_key(uint32_t image, uint32_t crop, unsigned char out[8]) {
  for (int i = 0; i < 4; ++i) {
    out[i] = static_cast<unsigned char>(image >> (24 - 8 * i));
    out[4 + i] = static_cast<unsigned char>(crop >> (24 - 8 * i));
  }
}

void decode_key(const void* key, size_t len, uint32_t* image, uint32_t* crop) {
  if (len != 8) throw Error(ErrorKind::kCorrupt, "record key of " + std::to_string(len) + " bytes");
  const auto* k = static_cast<const unsigned char*>(key);
  uint32_t a = 0, b = 0;
  for (int i = 0; i < 4; ++i) {
    a = (a << 8) | k[i];
    b = (b << 8) | k[4 + i];
  }
  *image = a;
  *crop = b;
}

size_t record_bytes(uint32_t payload_floats) {
  return record_bytes(Codec::kRawF32, payload_floats);
}

size_t record_bytes(Codec codec, uint32_t payload_values) {
  return kRecordHeaderBytes + size_t{payload_values} * codec_value_bytes(codec);
}

Codec peek_record_codec(const void* buf) {
  return static_cast<Codec>(get_u16(static_cast<const uint8_t*>(buf) + 6));
}

size_t encode_record(const RecordHeader& h, const float* payload, void* out) {
  auto* p = static_cast<uint8_t*>(out);
  std::memset(p, 0, kRecordHeaderBytes);
  put_u32(p + 0, kRecordMagic);
  put_u16(p + 4, kRecordFormat);
  put_u16(p + 6, static_cast<uint16_t>(h.codec));
  put_u32(p + 8, h.image);
  put_u32(p + 12, h.crop);
  put_u32(p + 16, static_cast<uint32_t>(h.label));
  put_u32(p + 20, static_cast<uint32_t>(h.box.x));
  put_u32(p + 24, static_cast<uint32_t>(h.box.y));
  put_u32(p + 28, static_cast<uint32_t>(h.box.w));
  put_u32(p + 32, static_cast<uint32_t>(h.box.h));
  p[36] = h.box.flipped ? 1 : 0;
  put_u32(p + 40, h.payload_floats);
  size_t saturated = 0;
  if (codec_is_half(h.codec))
    saturated = floats_to_halves(payload, h.payload_floats, p + kRecordHeaderBytes);
  else
    std::memcpy(p + kRecordHeaderBytes, payload, size_t{h.payload_floats} * sizeof(float));
  put_u32(p + kCrcOffset, crc32c(p, record_bytes(h.codec, h.payload_floats)));
  return saturated;
}

const void* decode_record(const void* buf, size_t len, bool verify, RecordHeader* h,
                          const std::string& what) {
  const auto* p = static_cast<const uint8_t*>(buf);
  auto bad = [&](const std::string& why) { return Error(ErrorKind::kCorrupt, what + ": " + why); };
  if (len < kRecordHeaderBytes) throw bad("truncated header (" + std::to_string(len) + " bytes)");
  if (get_u32(p) != kRecordMagic) throw bad("bad record magic");
  if (get_u16(p + 4) != kRecordFormat)
    throw Error(ErrorKind::kSchema,
                what + ": unknown record format " + std::to_string(get_u16(p + 4)));
  h->codec = static_cast<Codec>(get_u16(p + 6));
  h->image = get_u32(p + 8);
  h->crop = get_u32(p + 12);
  h->label = static_cast<int32_t>(get_u32(p + 16));
  h->box.x = static_cast<int32_t>(get_u32(p + 20));
  h->box.y = static_cast<int32_t>(get_u32(p + 24));
  h->box.w = static_cast<int32_t>(get_u32(p + 28));
  h->box.h = static_cast<int32_t>(get_u32(p + 32));
  h->box.flipped = p[36] != 0;
  h->payload_floats = get_u32(p + 40);
  const uint16_t codec = get_u16(p + 6);
  if (codec < static_cast<uint16_t>(Codec::kRawF32) ||
      codec > static_cast<uint16_t>(Codec::kPrepoolF16))
    throw bad("unknown codec " + std::to_string(codec));
  if (len != record_bytes(h->codec, h->payload_floats))
    throw bad("size " + std::to_string(len) + " does not match " +
              std::to_string(h->payload_floats) + " payload values of " + codec_name(h->codec));
  if (verify) {
    uint32_t stored = get_u32(p + kCrcOffset);
    // CRC of the header with the CRC field zeroed, then of the rest.
    uint8_t head[kRecordHeaderBytes];
    std::memcpy(head, p, kRecordHeaderBytes);
    put_u32(head + kCrcOffset, 0);
    uint32_t c = crc32c(head, kRecordHeaderBytes);
    c = crc32c(p + kRecordHeaderBytes, len - kRecordHeaderBytes, c);
    if (c != stored)
      throw bad("checksum mismatch (stored " + std::to_string(stored) + ", computed " +
                std::to_string(c) + ")");
  }
  return p + kRecordHeaderBytes;
}

}  // namespace vggcache
