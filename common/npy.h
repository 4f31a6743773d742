// Streaming writer for NumPy .npy files (format 1.0), so exports never hold the whole array.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace vggcache {

// Writes a C-order array of `shape` with dtype `descr` ("<f4", "<i8"). Rows are appended with
// write(); close() checks that exactly product(shape) elements were written. Throws Error(kIo)
// naming the file on any failure (e.g. disk full). Not thread-safe.
class NpyWriter {
 public:
  NpyWriter(const std::string& path, const std::string& descr, std::vector<uint64_t> shape,
            size_t item_bytes);
  ~NpyWriter();
  void write(const void* data, uint64_t count);  // count elements of item_bytes each
  void close();

 private:
  std::string path_;
  FILE* f_ = nullptr;
  uint64_t expected_ = 1, written_ = 0;
  size_t item_bytes_;
};

}  // namespace vggcache
