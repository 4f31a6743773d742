// The LMDB feature cache: one record per (image, crop).
//
// Layout on disk: CACHE/ is an LMDB environment (data.mdb, lock.mdb) plus writer.lock.
//   sub-database "records": key = big-endian u32 image ‖ big-endian u32 crop (sorts in (image, crop)
//                           order, so sequential writes use MDB_APPEND); value = RecordHeader ‖ payload.
//   sub-database "meta":    key "meta" = CacheMeta as JSON, rewritten in every write transaction so
//                           metadata and records always agree.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/cache_meta.h"
#include "common/record.h"

namespace vggcache {

struct WriterOptions {
  uint64_t initial_map_bytes = 1ull << 30;  // LMDB map size to start with; doubled on MDB_MAP_FULL
  bool overwrite = false;                   // true: delete an existing cache instead of resuming
};

// One record to write. `data` points at `meta.payload_floats` floats owned by the caller.
struct RecordIn {
  uint32_t image = 0;
  uint32_t crop = 0;
  int32_t label = 0;
  CropBox box;
  const float* data = nullptr;
};

// Single writer. Not thread-safe: call from one thread. Holds an exclusive flock on
// CACHE/writer.lock for its lifetime, so a second writer (any process) is refused with kLocked.
class CacheWriter {
 public:
  // Creates CACHE, or reopens it to resume. On resume the stored settings must equal `meta`'s
  // (CacheMeta::first_difference) or Error(kMismatch) names the differing setting; with
  // options.overwrite the old cache is removed first. A complete cache is reopened as is.
  // After open(), meta() holds the stored state (next_image, records, skipped) to resume from.
  static std::unique_ptr<CacheWriter> open(const std::string& dir, const CacheMeta& meta,
                                           const WriterOptions& options = {});
  ~CacheWriter();

  const CacheMeta& meta() const;
  CacheMeta& mutable_meta();  // edit skipped/extra; persisted by the next put_batch/finish

  // Writes all records and the current metadata in ONE transaction (atomic: all or nothing).
  // Records must come in increasing key order, after every record already stored. `next_image`
  // becomes meta().next_image. Grows the map and retries on MDB_MAP_FULL; throws Error(kIo)
  // naming the cache on other failures (e.g. disk full), leaving earlier commits intact.
  void put_batch(const std::vector<RecordIn>& records, uint32_t next_image);

  // Marks the cache complete (last transaction).
  void finish();

 private:
  struct Impl;
  explicit CacheWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A decoded view of one record. `data` points into the memory map (zero-copy) when the payload is
// aligned and the codec is raw-f32, else into `scratch` owned by the ReadTxn; it stays valid until
// the next get()/next() on the same ReadTxn or until the ReadTxn ends.
struct RecordView {
  RecordHeader header;
  const float* data = nullptr;     // dim floats (decoded); nullptr when ReaderOptions::expand is
                                   // false and the codec is not raw-f32
  const float* payload = nullptr;  // header.payload_floats stored floats, always a map view
                                   // (prepool-f32: the C × h × w pre-pool map)
};

class CacheReader;

// A read transaction: a consistent snapshot. One per thread (not thread-safe itself); any number
// may exist at once across threads (the env is opened with MDB_NOTLS). Must be destroyed before
// the CacheReader that began it.
class ReadTxn {
 public:
  ~ReadTxn();
  ReadTxn(ReadTxn&&) noexcept;
  ReadTxn& operator=(ReadTxn&&) noexcept;
  // Random access. Returns false when no such record. Verifies the checksum when the reader
  // was opened with verify=true (default) and throws Error(kCorrupt) naming the record.
  bool get(uint32_t image, uint32_t crop, RecordView* out);
  // Sequential scan in key order. Call seek_first() (or seek(image, crop)), then next() until false.
  void seek_first();
  void seek(uint32_t image, uint32_t crop);
  bool next(RecordView* out);
  // Where the stored value holding record (image, crop) lies in the memory map, without reading
  // or checking it (for page hints, common/readahead.h). False when no such record.
  bool payload_span(uint32_t image, uint32_t crop, const void** data, size_t* size);

 private:
  friend class CacheReader;
  struct Impl;
  explicit ReadTxn(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct ReaderOptions {
  bool allow_incomplete = false;  // false: a cache without complete=true is Error(kIncomplete)
  bool verify = true;             // check record checksums on every read
  bool expand = true;             // decode compact codecs to the dim-float vector in `data`
};

// Read-only handle. Thread-safe: begin() may be called from many threads concurrently.
// Clears stale reader slots (dead processes) at open. `dir` may also be a shard set
// (common/shard_set.h): read as the one cache its shards make up, each record from its shard.
class CacheReader {
 public:
  static std::unique_ptr<CacheReader> open(const std::string& dir, const ReaderOptions& opts = {});
  ~CacheReader();
  const CacheMeta& meta() const;
  uint64_t record_count() const;  // records actually stored (LMDB entry count)
  ReadTxn begin() const;
  const std::string& dir() const;

 private:
  friend class ReadTxn;
  struct Impl;
  explicit CacheReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Reads the metadata only (no completeness check; a shard set's combined metadata). Throws
// kNotACache / kSchema.
CacheMeta read_cache_meta(const std::string& dir);

}  // namespace vggcache
