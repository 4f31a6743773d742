// `featcache merge SHARD... --out CACHE`: the shards of one extraction (extract --shard I/N) into
// one cache equal, record for record and byte for byte, to a one-machine run's.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vggcache {

struct MergeSummary {
  size_t shards = 0;
  uint64_t records = 0;       // records in the merged cache
  uint64_t records_run = 0;   // records written by this call
  uint32_t resumed_from = 0;  // image an interrupted merge was resumed at (0: fresh)
  bool already_complete = false;
};

// Streams the shards' records, in shard order, into `out_dir` (one transaction per ~32 MiB, so an
// interrupted merge resumes where it stopped). `shard_dirs` may name shard caches in any order and
// shard sets (their manifests' shards). Refuses, naming the shard, a missing, incomplete,
// duplicated or differently configured shard (check_shards), and a shard whose records disagree
// with its metadata. An existing `out_dir` made from other shards is refused unless `overwrite`.
MergeSummary merge_shards(const std::vector<std::string>& shard_dirs, const std::string& out_dir,
                          bool overwrite, bool quiet = false);

}  // namespace vggcache
