#include "common/npy.h"

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace vggcache {

NpyWriter::NpyWriter(const std::string& path, const std::string& descr,
                     std::vector<uint64_t> shape, size_t item_bytes)
    : path_(path), item_bytes_(item_bytes) {
  std::string dims;
  for (auto d : shape) {
    dims += std::to_string(d) + ", ";
    expected_ *= d;
  }
  if (shape.size() > 1) dims.resize(dims.size() - 1);  // "(3, 4)" but "(3,)"
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims +
                       "), }";
  // magic(6) + version(2) + len(2) + header + '\n' must be a multiple of 64.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) throw Error(ErrorKind::kIo, path + ": cannot create: " + std::strerror(errno));
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  uint16_t len = static_cast<uint16_t>(header.size());
  unsigned char lenb[2] = {static_cast<unsigned char>(len & 0xFF),
                           static_cast<unsigned char>(len >> 8)};
  if (std::fwrite(magic, 1, 8, f_) != 8 || std::fwrite(lenb, 1, 2, f_) != 2 ||
      std::fwrite(header.data(), 1, header.size(), f_) != header.size())
    throw Error(ErrorKind::kIo, path + ": write failed: " + std::strerror(errno));
}

NpyWriter::~NpyWriter() {
  if (f_) std::fclose(f_);
}

void NpyWriter::write(const void* data, uint64_t count) {
  if (written_ + count > expected_)
    throw Error(ErrorKind::kInvalidArgument, path_ + ": more elements than the declared shape");
  if (std::fwrite(data, item_bytes_, count, f_) != count)
    throw Error(ErrorKind::kIo, path_ + ": write failed: " + std::strerror(errno));
  written_ += count;
}

void NpyWriter::close() {
  if (written_ != expected_)
    throw Error(ErrorKind::kInvalidArgument,
                path_ + ": wrote " + std::to_string(written_) + " of " +
                    std::to_string(expected_) + " elements");
  int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) throw Error(ErrorKind::kIo, path_ + ": close failed: " + std::strerror(errno));
}

}  // namespace vggcache
