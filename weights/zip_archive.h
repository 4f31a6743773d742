// Read-only view of a ZIP archive held in memory (e.g. a memory-mapped file), enough for the
// archives torch.save writes: entries stored uncompressed, optionally zip64. Nothing is copied;
// entry data are pointers into the caller's buffer, which must outlive the Archive.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace vggcache::zip {

// Thrown for every malformed or unsupported archive; the caller adds the file name.
class ZipError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Entry {
  std::string name;
  uint16_t method = 0;  // 0 = stored; anything else is compressed
  uint16_t flags = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;  // uncompressed
  uint64_t local_offset = 0;
};

// Local file headers start with this; torch.load uses it to tell zip from legacy files.
inline constexpr uint8_t kLocalHeaderMagic[4] = {'P', 'K', 3, 4};

class Archive {
 public:
  // Parses the central directory of data[0, n). Throws ZipError when there is none or it is
  // inconsistent with n (truncated file, offsets out of range).
  Archive(const uint8_t* data, size_t n);

  const std::vector<Entry>& entries() const { return entries_; }
  const Entry* find(const std::string& name) const;  // nullptr when absent

  // The bytes of a stored entry (pointer into the buffer, length entry.size). Throws ZipError
  // for compressed or encrypted entries and for data outside the buffer.
  const uint8_t* stored_data(const Entry& e) const;

 private:
  const uint8_t* data_;
  size_t n_;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace vggcache::zip
