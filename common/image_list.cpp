#include "common/image_list.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/crc32c.h"
#include "common/error.h"

namespace vggcache {

namespace {

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase too: it would not decode back to the same string
}

bool is_lower_hex_digest(const std::string& s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return hex_value(c) >= 0; });
}

Error corrupt(const std::string& what) {
  return Error(ErrorKind::kCorrupt, "the image list is malformed: " + what);
}

// Reads the list front to back; every read is bounds-checked against the bytes before the CRC.
struct Cursor {
  const unsigned char* p;
  const unsigned char* end;
  size_t entry = 0;  // for messages

  uint64_t varint(const char* what) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p == end) throw corrupt(fmt::format("entry {}: {} runs past the end", entry, what));
      const unsigned char b = *p++;
      v |= uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) return v;
    }
    throw corrupt(fmt::format("entry {}: {} is not a valid varint", entry, what));
  }
  const unsigned char* take(uint64_t n, const char* what) {
    if (n > static_cast<uint64_t>(end - p))
      throw corrupt(fmt::format("entry {}: {} ({} bytes) runs past the end", entry, what, n));
    const unsigned char* at = p;
    p += n;
    return at;
  }
};

}  // namespace

std::string encode_image_list(const std::vector<ImageEntry>& images) {
  std::string out(kImageListMagic, sizeof kImageListMagic);
  out += static_cast<char>(kImageListFormat);
  put_varint(out, images.size());
  const std::string* prev = nullptr;
  static const std::string kEmpty;
  for (const ImageEntry& e : images) {
    const std::string& a = prev ? *prev : kEmpty;
    const std::string& b = e.path;
    size_t prefix = 0;
    while (prefix < a.size() && prefix < b.size() && a[prefix] == b[prefix]) ++prefix;
    // The shared end may not reach into the shared start of either path.
    size_t suffix = 0;
    while (prefix + suffix < a.size() && prefix + suffix < b.size() &&
           a[a.size() - 1 - suffix] == b[b.size() - 1 - suffix])
      ++suffix;
    put_varint(out, prefix);
    put_varint(out, suffix);
    put_varint(out, b.size() - prefix - suffix);
    out.append(b, prefix, b.size() - prefix - suffix);
    put_varint(out, e.bytes);
    if (e.sha256.empty()) {
      out += '\0';
    } else if (is_lower_hex_digest(e.sha256)) {
      out += '\1';
      for (size_t i = 0; i < 64; i += 2)
        out += static_cast<char>(hex_value(e.sha256[i]) * 16 + hex_value(e.sha256[i + 1]));
    } else {
      out += '\2';
      put_varint(out, e.sha256.size());
      out += e.sha256;
    }
    put_varint(out, static_cast<uint32_t>(e.label));
    prev = &e.path;
  }
  const uint32_t crc = crc32c(out.data(), out.size());
  for (int i = 0; i < 4; ++i) out += static_cast<char>((crc >> (8 * i)) & 0xff);
  return out;
}

std::vector<ImageEntry> decode_image_list(const void* data, size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  if (size < sizeof kImageListMagic + 1 + 4 ||
      std::memcmp(bytes, kImageListMagic, sizeof kImageListMagic) != 0)
    throw corrupt("not a binary image list (no VGIL header)");
  if (bytes[4] != kImageListFormat)
    throw Error(ErrorKind::kSchema, fmt::format("image list format {} is not supported (this build "
                                                "reads format {})",
                                                bytes[4], kImageListFormat));
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) stored |= uint32_t{bytes[size - 4 + i]} << (8 * i);
  const uint32_t crc = crc32c(bytes, size - 4);
  if (crc != stored)
    throw corrupt(fmt::format("checksum mismatch (stored {:08x}, computed {:08x})", stored, crc));
  Cursor c{bytes + 5, bytes + size - 4};
  const uint64_t count = c.varint("the count");
  // Every entry takes at least 6 bytes: a bound before reserving memory for a damaged count.
  if (count > static_cast<uint64_t>(c.end - c.p) / 6)
    throw corrupt(fmt::format("{} entries cannot fit in {} bytes", count, size));
  std::vector<ImageEntry> out(count);
  static const std::string kEmpty;
  for (uint64_t i = 0; i < count; ++i) {
    c.entry = i;
    const std::string& prev = i > 0 ? out[i - 1].path : kEmpty;
    const uint64_t prefix = c.varint("the shared start"), suffix = c.varint("the shared end");
    if (prefix > prev.size() || suffix > prev.size() - prefix)
      throw corrupt(fmt::format("entry {} shares {} + {} bytes with a {}-byte path", i, prefix,
                                suffix, prev.size()));
    const uint64_t n = c.varint("the path length");
    const unsigned char* middle = c.take(n, "the path");
    std::string& path = out[i].path;
    path.reserve(prefix + n + suffix);
    path.assign(prev, 0, prefix);
    path.append(reinterpret_cast<const char*>(middle), n);
    path.append(prev, prev.size() - suffix, suffix);
    out[i].bytes = c.varint("the file size");
    const unsigned char kind = *c.take(1, "the digest kind");
    if (kind == 1) {
      const unsigned char* d = c.take(32, "the SHA-256");
      out[i].sha256.resize(64);
      static const char* kHex = "0123456789abcdef";
      for (int k = 0; k < 32; ++k) {
        out[i].sha256[2 * k] = kHex[d[k] >> 4];
        out[i].sha256[2 * k + 1] = kHex[d[k] & 15];
      }
    } else if (kind == 2) {
      const uint64_t len = c.varint("the digest length");
      out[i].sha256.assign(reinterpret_cast<const char*>(c.take(len, "the digest")), len);
    } else if (kind != 0) {
      throw corrupt(fmt::format("entry {}: unknown digest kind {}", i, kind));
    }
    const uint64_t label = c.varint("the label");
    if (label > UINT32_MAX) throw corrupt(fmt::format("entry {}: label {} too large", i, label));
    out[i].label = static_cast<int32_t>(static_cast<uint32_t>(label));
  }
  if (c.p != c.end)
    throw corrupt(fmt::format("{} bytes after the last of {} entries", c.end - c.p, count));
  return out;
}

}  // namespace vggcache
