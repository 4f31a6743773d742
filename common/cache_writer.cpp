// CacheWriter: one LMDB write transaction per batch, metadata rewritten in the same transaction,
// so a crash at any moment leaves records and metadata that agree (resume point = next_image).
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "common/cache.h"
#include "common/cache_repack.h"
#include "common/half.h"
#include "common/image_list.h"
#include "common/lmdb_util.h"

namespace fs = std::filesystem;

namespace vggcache {

namespace {

// The metadata as stored under "meta": schemas 2 and 3 leave the image list out (stored once
// under kImagesKey, see common/cache.h). Rewritten with every batch, so the list is not even
// built: for ImageNet's 1.28M images that would be a second of JSON a batch.
std::string meta_json(const CacheMeta& m) {
  return m.to_json(m.schema_version < 2).dump();
}

// The image list as stored under kImagesKey: JSON (schema 2) or binary (schema 3).
std::string image_list_value(const CacheMeta& m) {
  if (m.schema_version >= 3) return encode_image_list(m.images);
  return m.to_json().at("images").dump();
}

}  // namespace

size_t record_stride(const CacheMeta& m) {
  const size_t bytes = record_bytes(m.codec, m.payload_floats);
  return m.schema_version >= 2 ? (bytes + 15) / 16 * 16 : bytes;
}

uint32_t records_per_run(size_t stride, size_t page_bytes) {
  constexpr size_t kOverflowHeader = 16;  // LMDB's page header before an overflow value
  constexpr uint32_t kMaxRecords = 64;
  constexpr size_t kMaxBytes = 4u << 20;  // a run is one contiguous allocation: keep it moderate
  uint32_t best = 1;
  double best_waste = 1e300;
  for (uint32_t m = 1; m <= kMaxRecords && (m == 1 || m * stride <= kMaxBytes); ++m) {
    const size_t value = m * stride + kOverflowHeader;
    const size_t pages = (value + page_bytes - 1) / page_bytes;
    const double waste = static_cast<double>(pages * page_bytes - m * stride) / (m * stride);
    if (waste <= 0.0025) return m;
    if (waste < best_waste) {
      best_waste = waste;
      best = m;
    }
  }
  return best;
}

struct CacheWriter::Impl {
  std::string dir;
  int lock_fd = -1;
  lmdb::Env env;
  MDB_dbi records = 0, meta_db = 0;
  uint64_t map_bytes = 0;
  uint64_t repack_max_bytes = 0;
  CacheMeta meta;
  bool have_last = false;
  uint32_t last_image = 0, last_crop = 0;
  // Runs (schema 2): bytes of a record, from one record to the next, records per full run.
  size_t rec_bytes = 0, stride = 0;
  uint32_t run_records = 1;

  ~Impl() {
    if (lock_fd >= 0) close(lock_fd);  // releases the flock
  }

  void lock() {
    std::string path = dir + "/writer.lock";
    lock_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0)
      throw Error(ErrorKind::kIo,
                  fmt::format("{}: cannot open {}: {}", dir, path, strerror(errno)));
    if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
      char buf[32] = {0};
      ssize_t n = pread(lock_fd, buf, sizeof buf - 1, 0);
      std::string who = n > 0 ? std::string(" (pid ") + std::string(buf, n) + ")" : "";
      throw Error(ErrorKind::kLocked,
                  fmt::format("{}: another process is writing this cache{}; refusing a second "
                              "writer",
                              dir, who));
    }
    std::string pid = std::to_string(getpid());
    if (ftruncate(lock_fd, 0) == 0) (void)!pwrite(lock_fd, pid.data(), pid.size(), 0);
  }

  void open_env() {
    lmdb::check(mdb_env_create(env.out()), dir, "mdb_env_create");
    lmdb::check(mdb_env_set_maxdbs(env.get(), 4), dir, "mdb_env_set_maxdbs");
    lmdb::check(mdb_env_set_mapsize(env.get(), map_bytes), dir, "mdb_env_set_mapsize");
    lmdb::check(mdb_env_open(env.get(), dir.c_str(), MDB_NOTLS, 0644), dir, "mdb_env_open");
    MDB_envinfo info;
    mdb_env_info(env.get(), &info);
    map_bytes = std::max<uint64_t>(map_bytes, info.me_mapsize);
    int dead = 0;
    mdb_reader_check(env.get(), &dead);
    MDB_txn* t = nullptr;
    lmdb::check(mdb_txn_begin(env.get(), nullptr, 0, &t), dir, "mdb_txn_begin");
    lmdb::Txn txn(t);
    lmdb::check(mdb_dbi_open(t, lmdb::kRecordsDb, MDB_CREATE, &records), dir, "open records db");
    lmdb::check(mdb_dbi_open(t, lmdb::kMetaDb, MDB_CREATE, &meta_db), dir, "open meta db");
    lmdb::check(txn.commit(), dir, "commit");
    MDB_stat st;
    lmdb::check(mdb_env_stat(env.get(), &st), dir, "mdb_env_stat");
    rec_bytes = record_bytes(meta.codec, meta.payload_floats);
    stride = record_stride(meta);
    run_records = meta.schema_version >= 2 ? records_per_run(stride, st.ms_psize) : 1;
  }

  void find_last_key() {
    have_last = false;
    MDB_txn* t = nullptr;
    lmdb::check(mdb_txn_begin(env.get(), nullptr, MDB_RDONLY, &t), dir, "mdb_txn_begin");
    lmdb::Txn txn(t);
    MDB_cursor* c = nullptr;
    lmdb::check(mdb_cursor_open(t, records, &c), dir, "mdb_cursor_open");
    MDB_val k, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    if (rc == 0) {
      decode_key(k.mv_data, k.mv_size, &last_image, &last_crop);
      have_last = true;
      if (meta.schema_version >= 2) {
        if (v.mv_size == 0 || v.mv_size % stride != 0 || v.mv_size / stride > run_records)
          throw Error(ErrorKind::kCorrupt,
                      fmt::format("{}: the last run ({}, {}) holds {} bytes, not a whole number "
                                  "of {}-byte records (at most {}); run featcache verify on it",
                                  dir, last_image, last_crop, v.mv_size, stride, run_records));
        // The last record of the run is the last one stored.
        const auto* rec = static_cast<const unsigned char*>(v.mv_data) + v.mv_size - stride;
        std::memcpy(&last_image, rec + 8, 4);
        std::memcpy(&last_crop, rec + 12, 4);
      }
    }
    mdb_cursor_close(c);
  }

  // LMDB reports a short write as EIO; say what most likely caused it.
  std::string space_hint(size_t n) const {
    const uint64_t need = (n + run_records) * stride + (1 << 20);
    struct statvfs vfs;
    if (statvfs(dir.c_str(), &vfs) == 0) {
      const uint64_t avail = uint64_t{vfs.f_bavail} * vfs.f_frsize;
      if (avail < need) return fmt::format(": the disk is full ({} bytes free)", avail);
    }
    struct rlimit rl;
    std::error_code ec;
    const uint64_t size = fs::file_size(fs::path(dir) / "data.mdb", ec);
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && !ec &&
        size + need > rl.rlim_cur)
      return fmt::format(": the file-size limit (ulimit -f, {} bytes) is reached", rl.rlim_cur);
    return "";
  }

  // Small complete caches only (common/cache_repack.h). The cache is complete and valid before
  // this; a copy that fails (e.g. no room for it) leaves it as written, which is said.
  void repack() {
    if (meta.schema_version < 2 || repack_max_bytes == 0) return;
    std::error_code ec;
    const fs::path data = fs::path(dir) / "data.mdb";
    const uint64_t size = fs::file_size(data, ec);
    if (ec || size > repack_max_bytes) return;
    try {
      write_repacked_copy(dir, env.get(), records, meta_db, stride, run_records);
    } catch (const Error& e) {
      fs::remove_all(fs::path(dir) / kRepackStaging, ec);
      spdlog::warn(
          "{}: the cache is complete, but repacking it failed, so it keeps its runs as "
          "written ({})",
          dir, e.what());
      return;
    }
    // The writer's environment is closed before its file is replaced; the lock file belongs to
    // the replaced file (its transaction numbers), so it goes first, as in create_fresh.
    mdb_env_close(env.get());
    *env.out() = nullptr;
    fs::remove(fs::path(dir) / "lock.mdb", ec);
    fs::rename(fs::path(dir) / kRepackStaging / "data.mdb", data, ec);
    if (ec)
      spdlog::warn(
          "{}: the cache is complete, but the repacked copy could not replace it ({}), "
          "so it keeps its runs as written",
          dir, ec.message());
    else
      spdlog::debug("{}: repacked into full runs: {} -> {} bytes", dir, size,
                    fs::file_size(data, ec));
    fs::remove_all(fs::path(dir) / kRepackStaging, ec);
    open_env();
    find_last_key();
  }

  void grow() {
    map_bytes *= 2;
    lmdb::check(mdb_env_set_mapsize(env.get(), map_bytes), dir, "growing the map");
  }

  RecordHeader header_of(const RecordIn& r) const {
    RecordHeader h;
    h.image = r.image;
    h.crop = r.crop;
    h.label = r.label;
    h.box = r.box;
    h.codec = meta.codec;
    h.payload_floats = meta.payload_floats;
    return h;
  }

  // Schema 2: the batch's records as runs of run_records, the last one possibly shorter. Runs
  // never span batches: an earlier batch's values are never rewritten (see common/cache.h).
  int put_runs(MDB_txn* t, const std::vector<RecordIn>& recs) {
    for (size_t first = 0; first < recs.size(); first += run_records) {
      const size_t n = std::min<size_t>(run_records, recs.size() - first);
      unsigned char key[8];
      encode_key(recs[first].image, recs[first].crop, key);
      MDB_val k{8, key}, v{n * stride, nullptr};
      int rc = mdb_put(t, records, &k, &v, MDB_APPEND | MDB_RESERVE);
      if (rc) return rc;
      auto* out = static_cast<unsigned char*>(v.mv_data);
      for (size_t i = 0; i < n; ++i) {
        encode_record(header_of(recs[first + i]), recs[first + i].data, out + i * stride);
        std::memset(out + i * stride + rec_bytes, 0, stride - rec_bytes);  // padding
      }
    }
    return 0;
  }

  // One attempt at writing the batch; returns the LMDB code (MDB_MAP_FULL means grow and retry).
  int try_put(const std::vector<RecordIn>& recs, const std::string& meta_json) {
    MDB_txn* t = nullptr;
    int rc = mdb_txn_begin(env.get(), nullptr, 0, &t);
    if (rc) return rc;
    lmdb::Txn txn(t);
    const size_t bytes = rec_bytes;
    if (meta.schema_version >= 2) {
      rc = put_runs(t, recs);
      if (rc) return rc;
    }
    for (const auto& r : recs) {
      if (meta.schema_version >= 2) break;  // written as runs above
      unsigned char key[8];
      encode_key(r.image, r.crop, key);
      MDB_val k{8, key}, v{bytes, nullptr};
      rc = mdb_put(t, records, &k, &v, MDB_APPEND | MDB_RESERVE);
      if (rc) return rc;
      encode_record(header_of(r), r.data, v.mv_data);  // straight into the page LMDB reserved
    }
    MDB_val mk{std::strlen(lmdb::kMetaKey), const_cast<char*>(lmdb::kMetaKey)};
    MDB_val mv{meta_json.size(), const_cast<char*>(meta_json.data())};
    rc = mdb_put(t, meta_db, &mk, &mv, 0);
    if (rc) return rc;
    return txn.commit();
  }

  void write(const std::vector<RecordIn>& recs) {
    const std::string js = meta_json(meta);
    for (;;) {
      int rc = try_put(recs, js);
      if (rc == 0) return;
      if (rc == MDB_MAP_FULL) {
        grow();
        continue;
      }
      throw Error(ErrorKind::kIo,
                  fmt::format("{}: writing {} records failed: {}{} (records committed earlier are "
                              "intact; rerun to resume)",
                              dir, recs.size(), mdb_strerror(rc), space_hint(recs.size())));
    }
  }
};

CacheWriter::CacheWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CacheWriter::~CacheWriter() = default;
const CacheMeta& CacheWriter::meta() const {
  return impl_->meta;
}
CacheMeta& CacheWriter::mutable_meta() {
  return impl_->meta;
}

namespace {

constexpr const char* kStaging = ".creating";  // where a new environment is born

// Builds a fresh environment holding only `meta` in DIR/.creating, then moves its data.mdb into
// DIR in one rename. So DIR/data.mdb, once it exists, always carries metadata: a process killed
// at any moment of creation leaves either no cache or a valid empty one.
void create_fresh(const std::string& dir, const CacheMeta& meta, uint64_t map_bytes) {
  const fs::path staging = fs::path(dir) / kStaging;
  std::error_code ec;
  {
    lmdb::Env env;
    lmdb::Txn txn;
    MDB_dbi records, meta_db;
    lmdb::create_cache_env(staging.string(), map_bytes, dir, &env, &txn, &records, &meta_db);
    MDB_txn* t = txn.get();
    const std::string js = meta_json(meta);
    MDB_val mk{std::strlen(lmdb::kMetaKey), const_cast<char*>(lmdb::kMetaKey)};
    MDB_val mv{js.size(), const_cast<char*>(js.data())};
    lmdb::check(mdb_put(t, meta_db, &mk, &mv, 0), dir, "writing metadata");
    if (meta.schema_version >= 2) {
      const std::string images = image_list_value(meta);
      MDB_val ik{std::strlen(kImagesKey), const_cast<char*>(kImagesKey)};
      MDB_val iv{images.size(), const_cast<char*>(images.data())};
      lmdb::check(mdb_put(t, meta_db, &ik, &iv, 0), dir, "writing the image list");
    }
    lmdb::check(txn.commit(), dir, "commit");
  }
  fs::remove(fs::path(dir) / "lock.mdb", ec);  // belonged to a replaced environment, if any
  fs::rename(staging / "data.mdb", fs::path(dir) / "data.mdb", ec);
  if (ec)
    throw Error(ErrorKind::kIo, dir + ": cannot move the new cache into place: " + ec.message());
  fs::remove_all(staging, ec);
}

}  // namespace

std::unique_ptr<CacheWriter> CacheWriter::open(const std::string& dir, const CacheMeta& meta,
                                               const WriterOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->map_bytes = std::max<uint64_t>(options.initial_map_bytes, 1 << 16);
  impl->repack_max_bytes = options.repack_max_bytes;
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw Error(ErrorKind::kIo, dir + ": exists and is not a directory");
  const bool has_data = fs::exists(fs::path(dir) / "data.mdb", ec);
  if (!has_data && fs::is_directory(dir, ec)) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const auto name = e.path().filename();
      if (name != "writer.lock" && name != "lock.mdb" && name != kStaging && name != kRepackStaging)
        throw Error(ErrorKind::kNotACache,
                    dir +
                        ": exists, is not empty and is not a vggcache cache; refusing to write "
                        "into it");
    }
  }
  fs::create_directories(dir, ec);
  if (ec) throw Error(ErrorKind::kIo, dir + ": cannot create directory: " + ec.message());
  impl->lock();  // everything below happens under the writer lock
  const bool existing = has_data && !options.overwrite;
  if (existing) {
    CacheMeta stored = read_cache_meta(dir);  // throws kNotACache / kSchema
    std::string diff = CacheMeta::first_difference(stored, meta);
    if (!diff.empty())
      throw Error(ErrorKind::kMismatch,
                  fmt::format("{}: existing cache was made with different settings ({}, stored vs "
                              "requested); use --overwrite to replace it",
                              dir, diff));
    impl->meta = stored;
    fs::remove_all(fs::path(dir) / kStaging, ec);
    fs::remove_all(fs::path(dir) / kRepackStaging, ec);  // a repack killed before its rename
  } else {
    impl->meta = meta;
    impl->meta.schema_version = options.schema_version;
    impl->meta.complete = false;
    impl->meta.records = 0;
    impl->meta.next_image = 0;
    impl->meta.skipped.clear();
    create_fresh(dir, impl->meta, impl->map_bytes);
  }
  impl->open_env();
  impl->find_last_key();
  return std::unique_ptr<CacheWriter>(new CacheWriter(std::move(impl)));
}

void CacheWriter::put_batch(const std::vector<RecordIn>& records, uint32_t next_image) {
  Impl& s = *impl_;
  if (s.meta.complete) throw Error(ErrorKind::kInvalidArgument, s.dir + ": cache is complete");
  for (const auto& r : records) {
    if (s.have_last &&
        (r.image < s.last_image || (r.image == s.last_image && r.crop <= s.last_crop)))
      throw Error(ErrorKind::kInvalidArgument,
                  fmt::format("{}: record ({}, {}) written out of order (after ({}, {}))", s.dir,
                              r.image, r.crop, s.last_image, s.last_crop));
    if (!r.data) throw Error(ErrorKind::kInvalidArgument, "record without data");
    s.have_last = true;
    s.last_image = r.image;
    s.last_crop = r.crop;
  }
  CacheMeta before = s.meta;
  s.meta.records += records.size();
  s.meta.next_image = next_image;
  if (codec_is_half(s.meta.codec)) {
    // Counted before the transaction so the count commits with the records it describes.
    uint64_t saturated = 0;
    for (const auto& r : records)
      for (uint32_t i = 0; i < s.meta.payload_floats; ++i)
        saturated += std::isfinite(r.data[i]) && std::fabs(r.data[i]) > kHalfMax;
    if (saturated > 0) {
      if (!s.meta.extra.is_object()) s.meta.extra = nlohmann::json::object();
      const uint64_t total = s.meta.extra.value("f16_saturated_values", uint64_t{0}) + saturated;
      s.meta.extra["f16_saturated_values"] = total;
      spdlog::warn(
          "{}: {} values beyond the half range (±65504) saturated to ±65504 in this "
          "batch ({} in the cache so far)",
          s.dir, saturated, total);
    }
  }
  try {
    s.write(records);
  } catch (...) {
    s.meta = before;  // keep the in-memory state equal to what is on disk
    s.find_last_key();
    throw;
  }
}

void CacheWriter::finish() {
  impl_->meta.complete = true;
  try {
    impl_->write({});
  } catch (...) {
    impl_->meta.complete = false;
    throw;
  }
  impl_->repack();
}

}  // namespace vggcache
