// Layout per PKWARE's APPNOTE.TXT (sections 4.3.7 local header, 4.3.12 central directory header,
// 4.3.14-4.3.16 zip64 end records, 4.5.3 zip64 extra field).
#include "weights/zip_archive.h"

#include <algorithm>

namespace vggcache::zip {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50;
constexpr uint32_t kEnd64LocatorSig = 0x07064b50;
constexpr size_t kEndSize = 22;
constexpr size_t kEnd64LocatorSize = 20;
constexpr size_t kEnd64Size = 56;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;

uint64_t le(const uint8_t* p, size_t k) {
  uint64_t v = 0;
  for (size_t i = 0; i < k; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

// True when [off, off + len) lies inside a buffer of n bytes (without overflowing).
bool in_range(uint64_t off, uint64_t len, uint64_t n) {
  return off <= n && len <= n - off;
}

}  // namespace

Archive::Archive(const uint8_t* data, size_t n) : data_(data), n_(n) {
  // The end record sits at the very end, followed only by its comment. Requiring that exact fit
  // makes a truncated archive fail here rather than match a stray signature inside the data.
  if (n < kEndSize) throw ZipError("too short for a zip archive");
  size_t end = SIZE_MAX;
  size_t lowest = n - kEndSize > 0xffff ? n - kEndSize - 0xffff : 0;
  for (size_t pos = n - kEndSize + 1; pos-- > lowest;) {
    if (le(data + pos, 4) == kEndSig && pos + kEndSize + le(data + pos + 20, 2) == n) {
      end = pos;
      break;
    }
  }
  if (end == SIZE_MAX) throw ZipError("zip end-of-central-directory record not found (truncated?)");
  uint64_t count = le(data + end + 10, 2);
  uint64_t cd_size = le(data + end + 12, 4);
  uint64_t cd_offset = le(data + end + 16, 4);
  uint64_t cd_limit = end;  // the central directory lies before the end record(s)

  if (end >= kEnd64LocatorSize && le(data + end - kEnd64LocatorSize, 4) == kEnd64LocatorSig) {
    const uint8_t* loc = data + end - kEnd64LocatorSize;
    uint64_t rec = le(loc + 8, 8);
    if (!in_range(rec, kEnd64Size, end - kEnd64LocatorSize) || le(data + rec, 4) != kEnd64Sig) {
      throw ZipError("bad zip64 end-of-central-directory record");
    }
    count = le(data + rec + 32, 8);
    cd_size = le(data + rec + 40, 8);
    cd_offset = le(data + rec + 48, 8);
    cd_limit = rec;
  }
  if (!in_range(cd_offset, cd_size, cd_limit)) throw ZipError("zip central directory out of range");
  if (count > cd_size / kCentralSize) throw ZipError("zip entry count exceeds central directory");

  entries_.reserve(size_t(count));
  const uint8_t* p = data + cd_offset;
  const uint8_t* cd_end = p + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (size_t(cd_end - p) < kCentralSize || le(p, 4) != kCentralSig) {
      throw ZipError("bad zip central directory entry " + std::to_string(i));
    }
    Entry e;
    e.flags = uint16_t(le(p + 8, 2));
    e.method = uint16_t(le(p + 10, 2));
    e.compressed_size = le(p + 20, 4);
    e.size = le(p + 24, 4);
    size_t name_len = le(p + 28, 2), extra_len = le(p + 30, 2), comment_len = le(p + 32, 2);
    e.local_offset = le(p + 42, 4);
    size_t total = kCentralSize + name_len + extra_len + comment_len;
    if (size_t(cd_end - p) < total) throw ZipError("zip central directory entry overruns");
    e.name.assign(reinterpret_cast<const char*>(p + kCentralSize), name_len);

    // Zip64 extra field: 64-bit values replace, in this order, those 32-bit fields that are
    // saturated (0xffffffff).
    const uint8_t* x = p + kCentralSize + name_len;
    const uint8_t* x_end = x + extra_len;
    while (x_end - x >= 4) {
      uint64_t id = le(x, 2), len = le(x + 2, 2);
      x += 4;
      if (uint64_t(x_end - x) < len) throw ZipError("zip extra field overruns in " + e.name);
      if (id == 0x0001) {
        const uint8_t* f = x;
        const uint8_t* f_end = x + len;
        for (uint64_t* field : {&e.size, &e.compressed_size, &e.local_offset}) {
          if (*field != 0xffffffffu) continue;
          if (f_end - f < 8) throw ZipError("short zip64 extra field in " + e.name);
          *field = le(f, 8);
          f += 8;
        }
      }
      x += len;
    }
    by_name_.emplace(e.name, entries_.size());  // first of duplicate names wins
    entries_.push_back(std::move(e));
    p += total;
  }
}

const Entry* Archive::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

const uint8_t* Archive::stored_data(const Entry& e) const {
  if (e.flags & 1) throw ZipError("zip entry " + e.name + " is encrypted");
  if (e.method != 0) {
    throw ZipError("zip entry " + e.name + " is compressed (method " + std::to_string(e.method) +
                   "); only stored entries, as torch.save writes them, are supported");
  }
  if (e.compressed_size != e.size) {
    throw ZipError("zip entry " + e.name + " is stored but its sizes differ");
  }
  if (!in_range(e.local_offset, kLocalSize, n_) || le(data_ + e.local_offset, 4) != kLocalSig) {
    throw ZipError("bad zip local header for " + e.name);
  }
  // The local header's own name and extra lengths decide where the data start (torch pads the
  // extra field so that tensor data are 64-byte aligned).
  const uint8_t* h = data_ + e.local_offset;
  uint64_t start = e.local_offset + kLocalSize + le(h + 26, 2) + le(h + 28, 2);
  if (!in_range(start, e.size, n_)) {
    throw ZipError("zip entry " + e.name + " runs past the end of the file (truncated?)");
  }
  return data_ + start;
}

}  // namespace vggcache::zip
