#include "common/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include "common/error.h"

namespace vggcache {

void make_directories(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw Error(ErrorKind::kIo, "cannot create " + path + ": " + ec.message());
}

void write_file_atomically(const std::string& path, const std::string& contents) {
  write_file_atomically(path, std::vector<std::string_view>{contents});
}

namespace {

void rename_into_place(const std::string& tmp, const std::string& path) {
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(ErrorKind::kIo, "cannot rename " + tmp + " to " + path + ": " + ec.message());
  }
}

// Files at least this large go to the disk with O_DIRECT (train_head's head.bin: 25 MB at hidden
// 256, 16 of them per sweep): written through the page cache, each new file takes fresh
// page-cache pages, whose first touch cost ~1 s per GB of CPU on the VMs measured here (about
// as much as the rest of a 16-head sweep's bookkeeping); with O_DIRECT the device reads our
// buffer.
constexpr size_t kDirectMinBytes = size_t{4} << 20;
constexpr size_t kDirectAlign = 4096;  // offsets, lengths and the buffer's address
constexpr size_t kDirectChunk = size_t{4} << 20;

// Writes all of `data` to fd at its current offset; false (errno set) on an error.
bool write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// The pieces into `tmp` with O_DIRECT: whole aligned chunks staged in an aligned buffer, the
// unaligned tail (under 4 KiB) written after clearing O_DIRECT. Returns false, with nothing left
// behind, when the file system does not take O_DIRECT (tmpfs, some network file systems), so the
// caller writes it through the page cache instead: the bytes are the same either way. Throws
// Error(kIo) naming the file on any other failure.
bool write_direct(const std::string& tmp, const std::vector<std::string_view>& pieces) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0666);
  if (fd < 0) {
    if (errno == EINVAL) return false;
    throw Error(ErrorKind::kIo, "cannot create " + tmp + ": " + std::strerror(errno));
  }
  void* mem = nullptr;
  if (posix_memalign(&mem, kDirectAlign, kDirectChunk) != 0) {
    ::close(fd);
    std::remove(tmp.c_str());
    throw Error(ErrorKind::kIo, "cannot write " + tmp + ": out of memory for its buffer");
  }
  std::unique_ptr<char, decltype(&std::free)> buf(static_cast<char*>(mem), &std::free);
  size_t fill = 0;
  bool wrote = false;  // O_DIRECT accepted once: a later EINVAL is a real error
  int err = 0;
  auto flush = [&](size_t n) {
    if (!write_all(fd, buf.get(), n)) return false;
    wrote = true;
    std::memmove(buf.get(), buf.get() + n, fill - n);
    fill -= n;
    return true;
  };
  for (size_t i = 0; i < pieces.size() && err == 0; ++i) {
    const char* p = pieces[i].data();
    size_t left = pieces[i].size();
    while (left > 0 && err == 0) {
      const size_t take = std::min(left, kDirectChunk - fill);
      std::memcpy(buf.get() + fill, p, take);
      fill += take;
      p += take;
      left -= take;
      if (fill == kDirectChunk && !flush(kDirectChunk)) err = errno;
    }
  }
  if (err == 0 && fill >= kDirectAlign && !flush(fill / kDirectAlign * kDirectAlign)) err = errno;
  if (err == EINVAL && !wrote) {
    ::close(fd);
    std::remove(tmp.c_str());
    return false;
  }
  if (err == 0 && fill > 0) {  // the tail: not a whole aligned block
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_DIRECT) != 0 ||
        !write_all(fd, buf.get(), fill))
      err = errno;
  }
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    std::remove(tmp.c_str());
    throw Error(ErrorKind::kIo, "cannot write " + tmp + ": " + std::strerror(err));
  }
  return true;
}

}  // namespace

void write_file_atomically(const std::string& path, const std::vector<std::string_view>& pieces) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  size_t total = 0;
  for (std::string_view piece : pieces) total += piece.size();
  if (total >= kDirectMinBytes && write_direct(tmp, pieces)) {
    rename_into_place(tmp, path);
    return;
  }
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(ErrorKind::kIo, "cannot create " + tmp + ": " + std::strerror(errno));
  bool ok = true;
  for (size_t i = 0; ok && i < pieces.size(); ++i)
    ok = std::fwrite(pieces[i].data(), 1, pieces[i].size(), f) == pieces[i].size();
  ok = ok && std::fflush(f) == 0;
  const int saved = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    throw Error(ErrorKind::kIo, "cannot write " + tmp + ": " + std::strerror(ok ? errno : saved));
  }
  rename_into_place(tmp, path);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace vggcache
