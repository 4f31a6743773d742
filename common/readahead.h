// Page hints for a cache read through its memory map (caches larger than memory, docs/scale.md):
// ask the kernel to start reading the pages of records about to be gathered, and mark the pages
// of records already copied as the first to reclaim, so the page cache under a memory limit holds
// the records in flight rather than the ones just used.
#pragma once
#include <cstddef>
#include <cstdint>

namespace vggcache {

enum class PageAdvice {
  kWillNeed,  // madvise(MADV_WILLNEED): start asynchronous reads of the range now
  kCold,      // madvise(MADV_COLD): the range will not be used soon; reclaim it first, but keep
              // it while memory is free (a cache that fits stays resident)
};

// Turns off the kernel's read-around for the whole file mapping that holds `p` (madvise
// MADV_RANDOM over the mapping, found in /proc/self/maps) and returns its [begin, end). A fault
// on a page not in memory then reads that page alone, where read-around reads the device's
// read-ahead window around it (8 MB on the VMs measured here): for 100 KB records read in random
// order under a memory limit, that evicts the records in flight and the run thrashes (119
// vectors/s against 11,000 in memory, docs/scale.md). Reads are then asked for exactly, with
// kWillNeed. Throws Error(kIo) naming `what` if `p` is in no mapping or the kernel refuses.
struct MappedRange {
  uintptr_t begin = 0, end = 0;
};
MappedRange advise_mapping_random(const void* p, const char* what);

// Applies `advice` to the pages spanning [p, p + len) of a file mapping (rounded out to page
// bounds). Throws Error(kIo) naming `what` when the kernel refuses the hint.
void advise_pages(const void* p, size_t len, PageAdvice advice, const char* what);

}  // namespace vggcache
