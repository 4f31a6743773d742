#include "common/readahead.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <utility>

#include "common/error.h"

namespace vggcache {

namespace {

uintptr_t page_size() {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  return page;
}

// The first number after `key` on a line of `path` that starts with it, or `fallback`.
uint64_t read_keyed(const std::string& path, const std::string& key, uint64_t fallback) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (line.compare(0, key.size(), key) == 0) {
      unsigned long long v = 0;
      if (std::sscanf(line.c_str() + key.size(), "%llu", &v) == 1) return v;
    }
  return fallback;
}

}  // namespace

MappedFile MappedFile::open_random(const void* p, const char* what) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  std::ifstream maps("/proc/self/maps");
  if (!maps) throw Error(ErrorKind::kIo, std::string(what) + ": cannot read /proc/self/maps");
  MappedFile f;
  std::string path;
  for (std::string line; std::getline(maps, line);) {
    // "begin-end perms offset dev inode path", numbers in hex; the path may hold spaces.
    unsigned long long lo = 0, hi = 0, off = 0, inode = 0;
    char perms[8] = {}, dev[32] = {};
    int used = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %31s %llu %n", &lo, &hi, perms, &off, dev,
                    &inode, &used) >= 6 &&
        lo <= at && at < hi) {
      f.range_ = {static_cast<uintptr_t>(lo), static_cast<uintptr_t>(hi)};
      f.offset_ = off;
      if (inode != 0 && used > 0) path = line.substr(static_cast<size_t>(used));
      break;
    }
  }
  if (f.range_.end == 0)
    throw Error(ErrorKind::kIo, fmt::format("{}: address {:#x} is in no mapping", what, at));
  if (path.empty() || path[0] != '/')
    throw Error(ErrorKind::kIo, fmt::format("{}: address {:#x} is in no file mapping", what, at));
  f.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd_ < 0)
    throw Error(ErrorKind::kIo, fmt::format("{}: cannot open {} for page advice: {}", what, path,
                                            std::strerror(errno)));
  if (madvise(reinterpret_cast<void*>(f.range_.begin), f.range_.end - f.range_.begin,
              MADV_RANDOM) != 0)
    throw Error(ErrorKind::kIo, fmt::format("{}: madvise(MADV_RANDOM) of {} bytes failed: {}", what,
                                            f.range_.end - f.range_.begin, std::strerror(errno)));
  return f;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : range_(o.range_), offset_(o.offset_), fd_(std::exchange(o.fd_, -1)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    range_ = o.range_;
    offset_ = o.offset_;
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (fd_ >= 0) ::close(fd_);
}

void MappedFile::release(uintptr_t lo, uintptr_t hi, const char* what) const {
  lo = std::max(lo, range_.begin);
  hi = std::min(hi, range_.end);
  lo = (lo + page_size() - 1) & ~(page_size() - 1);
  hi &= ~(page_size() - 1);
  if (hi <= lo) return;
  if (madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED) != 0)
    throw Error(ErrorKind::kIo, fmt::format("{}: madvise(MADV_DONTNEED) of {} bytes failed: {}",
                                            what, hi - lo, std::strerror(errno)));
  const uint64_t off = offset_ + (lo - range_.begin);
  const int rc =
      posix_fadvise(fd_, static_cast<off_t>(off), static_cast<off_t>(hi - lo), POSIX_FADV_DONTNEED);
  if (rc != 0)
    throw Error(ErrorKind::kIo, fmt::format("{}: posix_fadvise(DONTNEED) of {} bytes failed: {}",
                                            what, hi - lo, std::strerror(rc)));
}

void will_need_pages(const void* p, size_t len, const char* what) {
  if (len == 0) return;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p) & ~(page_size() - 1);
  const uintptr_t hi =
      (reinterpret_cast<uintptr_t>(p) + len + page_size() - 1) & ~(page_size() - 1);
  if (madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_WILLNEED) != 0)
    throw Error(ErrorKind::kIo, fmt::format("{}: madvise(MADV_WILLNEED) of {} bytes failed: {}",
                                            what, hi - lo, std::strerror(errno)));
}

uint64_t memory_limit_bytes() {
  uint64_t limit = read_keyed("/proc/meminfo", "MemTotal:", 0) << 10;  // kB
  if (limit == 0) limit = std::numeric_limits<uint64_t>::max();
  std::ifstream cg("/proc/self/cgroup");
  for (std::string line; std::getline(cg, line);) {
    // "id:controllers:path": v1 names "memory" among the controllers, v2 has id 0 and none.
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string ctl = line.substr(a + 1, b - a - 1), rel = line.substr(b + 1);
    std::stringstream ctls(ctl);
    bool memory = false;
    for (std::string c; std::getline(ctls, c, ',');) memory |= c == "memory";
    if (memory) {
      limit = std::min(limit, read_keyed("/sys/fs/cgroup/memory" + rel + "/memory.stat",
                                         "hierarchical_memory_limit ", limit));
    } else if (line.compare(0, 3, "0::") == 0) {
      // v2: "max" reads as no number, so the fallback (no limit) holds.
      for (std::string dir = rel;; dir = dir.substr(0, dir.rfind('/'))) {
        limit = std::min(limit, read_keyed("/sys/fs/cgroup" + dir + "/memory.max", "", limit));
        if (dir.empty() || dir == "/") break;
      }
    }
  }
  return limit;
}

ReadAheadThread::ReadAheadThread() : thread_([this] { loop(); }) {}

ReadAheadThread::~ReadAheadThread() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

void ReadAheadThread::rethrow_locked() {
  if (error_) std::rethrow_exception(error_);
}

void ReadAheadThread::post(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    rethrow_locked();
    jobs_.push_back(std::move(job));
  }
  cv_.notify_all();
}

void ReadAheadThread::drain() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return (jobs_.empty() && !running_) || error_; });
  rethrow_locked();
}

void ReadAheadThread::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    if (stop_) return;
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    running_ = true;
    lock.unlock();
    std::exception_ptr err;
    try {
      job();
    } catch (...) {
      err = std::current_exception();
    }
    lock.lock();
    running_ = false;
    if (err && !error_) {
      error_ = err;
      jobs_.clear();
    }
    cv_.notify_all();
  }
}

}  // namespace vggcache
