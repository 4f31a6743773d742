// Page hints for a cache read through its memory map (caches larger than memory, docs/scale.md):
// no read-around on faults, the pages of the records about to be gathered read ahead exactly, by a
// thread of their own, and the pages of records already used given back.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace vggcache {

// Addresses [begin, end) in a mapping.
struct MappedRange {
  uintptr_t begin = 0, end = 0;
};

// One file mapping of this process (a line of /proc/self/maps) and a read-only descriptor of its
// file, for page-cache advice on the file's byte ranges (posix_fadvise takes a descriptor, not an
// address). Move-only: it owns the descriptor.
class MappedFile {
 public:
  // Finds the file mapping that holds `p`, opens its file and turns off the kernel's read-around
  // for the whole mapping (madvise MADV_RANDOM). A fault on a page not in memory then reads that
  // page alone, where read-around reads the device's read-ahead window around it (8 MB on the VMs
  // measured here): for 100 KB records read in random order under a memory limit, that evicts the
  // records in flight and the run thrashes (129 vectors/s where exact reads give 3,576,
  // docs/scale.md). Reads are then asked for exactly, with will_need_pages(). Throws Error(kIo)
  // naming `what` if `p` is in no file mapping, the file cannot be opened or the kernel refuses.
  static MappedFile open_random(const void* p, const char* what);
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const MappedRange& range() const { return range_; }
  bool contains(uintptr_t a) const { return range_.begin <= a && a < range_.end; }
  // Gives back the whole pages inside [lo, hi) (rounded inward, so a page that also holds bytes
  // outside the range, a neighbouring record still to come, stays): unmapped from this process
  // (MADV_DONTNEED), then dropped from the page cache (POSIX_FADV_DONTNEED on the file's bytes).
  // Under a memory limit that frees room before the next reads need it. Left to the kernel, the
  // cgroup's reclaim unmaps pages still mapped, a TLB shootdown on every CPU per batch: 28% of a
  // read-bound run's CPU samples under perf, 17% in the shootdown interrupts (docs/scale.md,
  // section 3). A page the kernel holds in a larger folio goes only with its whole folio (pages
  // read through hints are single pages). The bytes stay readable: a later access reads them
  // again. Throws Error(kIo) naming `what` when the kernel refuses.
  void release(uintptr_t lo, uintptr_t hi, const char* what) const;

 private:
  MappedFile() = default;
  MappedRange range_;
  uint64_t offset_ = 0;  // the file offset mapped at range_.begin
  int fd_ = -1;
};

// madvise(MADV_WILLNEED) on the pages spanning [p, p + len) of a file mapping (rounded out to
// page bounds): the kernel starts reading them now, asynchronously. Throws Error(kIo) naming
// `what` when the kernel refuses the hint.
void will_need_pages(const void* p, size_t len, const char* what);

// The memory this process may use, in bytes: the smaller of the machine's (MemTotal) and its
// memory cgroup's limit (v1: hierarchical_memory_limit, which counts the ancestors' limits; v2:
// the smallest memory.max from its group up). Page cache counts against a cgroup's limit, so a
// cache larger than this cannot stay in memory from one epoch to the next.
uint64_t memory_limit_bytes();

// A thread that runs page hints and releases in the order they are posted, off the threads that
// gather and train: madvise(MADV_WILLNEED) blocks while it allocates the pages it reads
// (reclaiming others under a memory limit) and while the device's queue is full, which on a TBB
// worker stalls the steps that share it. An exception from a job is kept and rethrown to the
// caller by the next post() or by drain(); the jobs after it are dropped. The destructor drops the
// jobs not started, waits for the one running and joins, whatever happened: a caller that stops
// early (an error in a step) leaves no thread behind.
class ReadAheadThread {
 public:
  ReadAheadThread();
  ~ReadAheadThread();
  ReadAheadThread(const ReadAheadThread&) = delete;
  ReadAheadThread& operator=(const ReadAheadThread&) = delete;
  void post(std::function<void()> job);
  // Waits until every posted job has run; rethrows the first error of one.
  void drain();

 private:
  void loop();
  void rethrow_locked();  // with mu_ held
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool running_ = false;  // a job is running (outside the lock)
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace vggcache
