// Page hints for a cache read through its memory map (caches larger than memory, docs/scale.md):
// no read-around on faults, and the pages of the records about to be gathered read ahead exactly.
#pragma once
#include <cstddef>
#include <cstdint>

namespace vggcache {

// Turns off the kernel's read-around for the whole file mapping that holds `p` (madvise
// MADV_RANDOM over the mapping, found in /proc/self/maps) and returns its [begin, end). A fault
// on a page not in memory then reads that page alone, where read-around reads the device's
// read-ahead window around it (8 MB on the VMs measured here): for 100 KB records read in random
// order under a memory limit, that evicts the records in flight and the run thrashes (129
// vectors/s where exact reads give 3,576, docs/scale.md). Reads are then asked for exactly, with
// will_need_pages(). Throws Error(kIo) naming `what` if `p` is in no mapping or the kernel refuses.
struct MappedRange {
  uintptr_t begin = 0, end = 0;
};
MappedRange advise_mapping_random(const void* p, const char* what);

// madvise(MADV_WILLNEED) on the pages spanning [p, p + len) of a file mapping (rounded out to
// page bounds): the kernel starts reading them now, asynchronously. Throws Error(kIo) naming
// `what` when the kernel refuses the hint.
void will_need_pages(const void* p, size_t len, const char* what);

}  // namespace vggcache
