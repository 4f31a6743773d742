// Shards of one extraction (`extract --shard I/N`) and shard sets. A shard set is a directory
// whose manifest (shards.json) lists the N shard caches of one extraction; CacheReader::open reads
// it as the one cache a one-machine run would have written, without copying any record.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/cache_check.h"
#include "common/cache_meta.h"

namespace vggcache {

inline constexpr const char* kShardManifest = "shards.json";

struct ShardSpec {
  uint32_t index = 0;
  uint32_t count = 0;
};

// Parses "I/N" (0-based, 0 <= I < N) or "auto": the index from SLURM_ARRAY_TASK_ID (or, outside
// Slurm, JOB_COMPLETION_INDEX of a Kubernetes Indexed Job), the count from VGGCACHE_SHARD_COUNT or
// else SLURM_ARRAY_TASK_COUNT (only when the array is exactly 0..N-1: a resubmitted subset of the
// tasks must say the count). Throws Error(kInvalidArgument) naming what is wrong or missing.
ShardSpec parse_shard_spec(const std::string& text);

// The slice of shard `index` of `count` over `n_images` images: whole chunks of `grain` images
// (extract's unit of work), dealt out evenly — shard I gets chunks [I*C/N, (I+1)*C/N) of the
// C = ceil(n/grain). Following the chunk grid keeps every forward batch of a shard equal to the
// one-machine run's, so vectors match bit for bit even where results depend on the batch.
ShardInfo shard_slice(uint32_t index, uint32_t count, uint32_t n_images, uint32_t grain);

// Checks that `metas` (the caches `dirs`, in any order) are the N shards of one extraction: each a
// shard, each index once, none missing, the same settings, slices that tile the image list and,
// with `require_complete`, each complete. Returns their order by shard index. Throws Error naming
// the offending shard (kIncomplete for an unfinished one, kMismatch otherwise).
std::vector<size_t> check_shards(const std::vector<std::string>& dirs,
                                 const std::vector<CacheMeta>& metas, bool require_complete);

// The metadata of the whole cache that `ordered` shards (by index) make up: what a one-machine run
// writes (no shard field, records summed, skipped lists concatenated, complete when all are).
CacheMeta combined_meta(const std::vector<const CacheMeta*>& ordered);

bool is_shard_set(const std::string& dir);

// The shard directories a set lists, resolved against the set directory, in manifest order.
std::vector<std::string> read_shard_manifest(const std::string& set_dir);

// Writes SET_DIR/shards.json (atomically) listing `shard_dirs` (paths relative to SET_DIR where
// they lie below it). The shards must exist and form a set (check_shards, complete or not).
void write_shard_manifest(const std::string& set_dir, const std::vector<std::string>& shard_dirs);

// `featcache verify` of a set: every shard verified on its own (problems name the shard) plus the
// set's consistency.
VerifyReport verify_shard_set(const std::string& set_dir, size_t max_problems,
                              bool allow_incomplete);

}  // namespace vggcache
