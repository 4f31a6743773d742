// Repacking a small complete cache into full runs (schema ≥ 2), done by CacheWriter::finish().
//
// Why: runs never span write transactions (common/cache.h), so every batch ends with a short run,
// and LMDB keeps the pages that the last two transactions copied on write (the metadata, the B-tree
// roots, its free list) as free pages in the file. Both are a constant cost per batch and per cache
// that a large cache does not notice, but a small one does: a 1-view 64 px prepool-f16 cache of
// carbike64's 600 test images (4 KB records, batches of 64) had 10 pages of short runs and 9 free
// pages beside its 600 pages of payload, 3.2%. Once the cache is complete no resume needs the
// batch boundaries, so finish() copies it into a fresh environment: the metadata values as they
// are, the records cut into runs of `run_records` from the first record on, and no free pages.
// Only below a size limit, as the copy costs a read and a write of the whole file.
#pragma once
#include <lmdb.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace vggcache {

inline constexpr const char* kRepackStaging = ".repacking";  // where the copy is made, in DIR

// Writes the repacked copy of the environment `env` (records in `records`, metadata in
// `meta_db`; records `stride` bytes apart in runs) to DIR/.repacking/data.mdb. The caller swaps
// it in. Throws Error(kIo / kCorrupt) naming DIR; DIR itself is left untouched.
void write_repacked_copy(const std::string& dir, MDB_env* env, MDB_dbi records, MDB_dbi meta_db,
                         size_t stride, uint32_t run_records);

}  // namespace vggcache
