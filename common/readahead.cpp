#include "common/readahead.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "common/error.h"

namespace vggcache {

MappedRange advise_mapping_random(const void* p, const char* what) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  std::ifstream maps("/proc/self/maps");
  if (!maps) throw Error(ErrorKind::kIo, std::string(what) + ": cannot read /proc/self/maps");
  MappedRange r;
  for (std::string line; std::getline(maps, line);) {
    // "begin-end perms offset dev inode path", addresses in hex.
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx", &lo, &hi) == 2 && lo <= at && at < hi) {
      r.begin = static_cast<uintptr_t>(lo);
      r.end = static_cast<uintptr_t>(hi);
      break;
    }
  }
  if (r.end == 0)
    throw Error(ErrorKind::kIo, fmt::format("{}: address {:#x} is in no mapping", what, at));
  if (madvise(reinterpret_cast<void*>(r.begin), r.end - r.begin, MADV_RANDOM) != 0)
    throw Error(ErrorKind::kIo, fmt::format("{}: madvise(MADV_RANDOM) of {} bytes failed: {}", what,
                                            r.end - r.begin, std::strerror(errno)));
  return r;
}

void will_need_pages(const void* p, size_t len, const char* what) {
  if (len == 0) return;
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + len + page - 1) & ~(page - 1);
  if (madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_WILLNEED) != 0)
    throw Error(ErrorKind::kIo, fmt::format("{}: madvise(MADV_WILLNEED) of {} bytes failed: {}",
                                            what, hi - lo, std::strerror(errno)));
}

}  // namespace vggcache
