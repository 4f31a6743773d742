// The LMDB feature cache: one record per (image, crop).
//
// Layout on disk: CACHE/ is an LMDB environment (data.mdb, lock.mdb) plus writer.lock.
//   sub-database "records": key = big-endian u32 image ‖ big-endian u32 crop (sorts in (image,
//   crop)
//                           order, so sequential writes use MDB_APPEND); value = a run of
//                           consecutive records (schema 2) or one record (schema 1), each record
//                           RecordHeader ‖ payload (common/record.h).
//   sub-database "meta":    key "meta" = CacheMeta as JSON, rewritten in every write transaction so
//                           metadata and records always agree; schema 2 keeps its image list
//                           under key "images" instead, written once when the cache is created
//                           (the list is a setting: a resume must give the same). Rewriting the
//                           list with every batch kept ~3 copies of it in the file (LMDB reuses
//                           freed pages two transactions later): ~150 bytes an image each, 11% of
//                           a 4 KB 1-view prepool-f16 record. Schema 3 stores it in binary,
//                           ~40 bytes an image (common/image_list.h); schema 2 as JSON.
//
// Why runs (schema 2): LMDB stores a value larger than a page on its own overflow pages behind a
// 16-byte page header, so one record per value rounds every record up to whole pages: a 64 px
// prepool-f32 record (64 + 8,192 bytes) took 3 pages, 1.5× its payload, and a 64 px prepool-f16
// one (64 + 4,096) 2 pages, 2×. A run holds up to m records back to back, each at a stride of its
// size rounded up to 16 bytes (so every payload stays 16-byte aligned in the map: zero-copy reads
// stay zero-copy), and its key is its first record's key. m is the smallest count (up to 64
// records and 4 MiB) for which 16 + m·stride wastes at most 0.25% of its whole pages
// (records_per_run). Runs never span write transactions: each batch is cut into full runs and
// one shorter last run, so a batch wastes under one page beyond the 0.25% (a batch of
// extract's 160 views of 8 KB: 0.3%). Rewriting an open last run with the next batch instead was
// measured at 1.10–1.19× the payload: LMDB frees the old run's pages but cannot reuse them for the
// larger run that replaces it (overflow pages must be contiguous), so the file grows by each
// rewrite. A transaction still commits whole images, and a resumed extraction commits the same
// batches as a clean one, so it ends with the same runs. Each record keeps its own CRC, checked per
// record; get() finds the run whose first key is at or before (image, crop) and reads the
// record where a run without gaps puts it (one page touched), else searches the run.
// finish() then repacks a complete cache of up to WriterOptions::repack_max_bytes into full runs
// without LMDB's free pages (common/cache_repack.h). Schema 1 caches (one record per value) still
// read, and resume in their own layout.
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
  int schema_version = kSchemaVersion;      // layout of a NEW cache; 1 (one record per value)
                                            // only for tests of old caches; resume keeps the
                                            // stored cache's
  uint64_t repack_max_bytes = 64ull << 20;  // finish() repacks a complete cache up to this size
                                            // into full runs (common/cache_repack.h); 0: never
};

inline constexpr const char* kImagesKey = "images";  // schemas 2-3's image list, in "meta"

// Bytes from one record's start to the next inside a run: the record rounded up to 16 bytes
// (schema 2), or the record itself (schema 1, one per value).
size_t record_stride(const CacheMeta& m);
// Records per run (schema 2) for records `stride` bytes apart on `page_bytes` LMDB pages.
uint32_t records_per_run(size_t stride, size_t page_bytes);

// One record to write. `data` points at `meta.payload_floats` floats owned by the caller (an f16
// codec stores them as halves).
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
                                   // false and the codec is not a raw one
  const float* payload = nullptr;  // header.payload_floats stored values as floats: a map view
                                   // for the f32 codecs, the halves expanded to float32 (a
                                   // scratch buffer) for the f16 ones (prepool: the C × h × w map)
  const void* stored = nullptr;  // the payload's bytes as stored, always a map view
  size_t stored_bytes = 0;
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
  // Sequential scan in key order. Call seek_first() (or seek(image, crop)), then next() until
  // false.
  void seek_first();
  void seek(uint32_t image, uint32_t crop);
  bool next(RecordView* out);
  // Where record (image, crop) lies in the memory map, found without reading or checking it (for
  // page hints, common/readahead.h): the stored value (schema 1) or the record's slot in its run
  // (computed, so an image skipped inside the run may make it point at a neighbour). False when
  // no run can hold such a record.
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
