// CacheReader: read-only env with MDB_NOTLS so every thread can hold its own read transaction.
#include <filesystem>
#include <fmt/format.h>
#include <mutex>

#include "common/cache.h"
#include "common/lmdb_util.h"
#include "common/prepool.h"

namespace fs = std::filesystem;

namespace vggcache {
namespace {

struct OpenEnv {
  lmdb::Env env;
  MDB_dbi records = 0, meta_db = 0;
};

// Opens `dir` read-only and its two sub-databases. Throws kNotACache for anything that is not one.
void open_readonly(const std::string& dir, OpenEnv* out) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(ErrorKind::kNotACache, dir + ": not a vggcache cache (no such directory)");
  if (!fs::exists(fs::path(dir) / "data.mdb", ec))
    throw Error(ErrorKind::kNotACache, dir + ": not a vggcache cache (no data.mdb)");
  lmdb::check(mdb_env_create(out->env.out()), dir, "mdb_env_create");
  lmdb::check(mdb_env_set_maxdbs(out->env.get(), 4), dir, "mdb_env_set_maxdbs");
  lmdb::check(mdb_env_open(out->env.get(), dir.c_str(), MDB_RDONLY | MDB_NOTLS, 0644), dir,
              "not a readable vggcache cache", ErrorKind::kNotACache);
  int dead = 0;
  mdb_reader_check(out->env.get(), &dead);  // clears slots of readers that died
  MDB_txn* t = nullptr;
  lmdb::check(mdb_txn_begin(out->env.get(), nullptr, MDB_RDONLY, &t), dir, "mdb_txn_begin");
  lmdb::Txn txn(t);
  if (mdb_dbi_open(t, lmdb::kRecordsDb, 0, &out->records) != 0 ||
      mdb_dbi_open(t, lmdb::kMetaDb, 0, &out->meta_db) != 0)
    throw Error(ErrorKind::kNotACache, dir + ": not a vggcache cache (LMDB without its databases)");
  lmdb::check(txn.commit(), dir, "commit");  // keeps the dbi handles open for later txns
}

CacheMeta read_meta(const std::string& dir, const OpenEnv& e) {
  MDB_txn* t = nullptr;
  lmdb::check(mdb_txn_begin(e.env.get(), nullptr, MDB_RDONLY, &t), dir, "mdb_txn_begin");
  lmdb::Txn txn(t);
  MDB_val k{std::strlen(lmdb::kMetaKey), const_cast<char*>(lmdb::kMetaKey)}, v;
  if (mdb_get(t, e.meta_db, &k, &v) != 0)
    throw Error(ErrorKind::kNotACache, dir + ": not a vggcache cache (no metadata)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(static_cast<const char*>(v.mv_data),
                              static_cast<const char*>(v.mv_data) + v.mv_size);
  } catch (const nlohmann::json::exception& ex) {
    throw Error(ErrorKind::kCorrupt, dir + ": metadata is not valid JSON: " + ex.what());
  }
  try {
    return CacheMeta::from_json(j);
  } catch (const Error& ex) {
    throw Error(ex.kind(), dir + ": " + ex.what());
  }
}

}  // namespace

struct CacheReader::Impl {
  std::string dir;
  OpenEnv e;
  CacheMeta meta;
  ReaderOptions opts;
  std::mutex resize_mu;
};

struct ReadTxn::Impl {
  const CacheReader::Impl* reader = nullptr;
  lmdb::Txn txn;
  MDB_cursor* cursor = nullptr;
  bool positioned = false;  // next() returns the current entry first after a seek
  int seek_op = MDB_FIRST;
  MDB_val seek_key{};
  unsigned char key_buf[8];
  std::vector<float> scratch;    // expanded vector of the last compact record
  std::vector<float> unaligned;  // aligned copy of the last misaligned payload

  ~Impl() {
    if (cursor) mdb_cursor_close(cursor);
  }

  void decode(const MDB_val& k, const MDB_val& v, RecordView* out) {
    uint32_t image, crop;
    decode_key(k.mv_data, k.mv_size, &image, &crop);
    const CacheMeta& m = reader->meta;
    std::string what = fmt::format("{}: record ({}, {})", reader->dir, image, crop);
    const float* p = decode_record(v.mv_data, v.mv_size, reader->opts.verify, &out->header, what);
    if (out->header.image != image || out->header.crop != crop)
      throw Error(ErrorKind::kCorrupt, what + ": key and record disagree");
    if (out->header.codec != m.codec || out->header.payload_floats != m.payload_floats)
      throw Error(ErrorKind::kCorrupt, what + ": codec or size differs from the cache metadata");
    if (reinterpret_cast<uintptr_t>(p) % alignof(float) != 0) {
      // Only small records inside ordinary LMDB pages can be misaligned; copy those.
      unaligned.resize(m.payload_floats);
      std::memcpy(unaligned.data(), p, m.payload_floats * sizeof(float));
      p = unaligned.data();
    }
    out->payload = p;
    if (m.codec == Codec::kRawF32) {
      out->data = p;  // zero-copy: a view into the memory map
    } else if (!reader->opts.expand) {
      out->data = nullptr;
    } else {  // kPrepoolF32, shape validated at open
      scratch.resize(m.dim);
      const auto& s = m.prepool_shape;
      expand_prepool(p, s[0], s[1], s[2], scratch.data());
      out->data = scratch.data();
    }
  }
};

ReadTxn::ReadTxn(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReadTxn::ReadTxn(ReadTxn&&) noexcept = default;
ReadTxn& ReadTxn::operator=(ReadTxn&&) noexcept = default;
ReadTxn::~ReadTxn() = default;

bool ReadTxn::get(uint32_t image, uint32_t crop, RecordView* out) {
  unsigned char key[8];
  encode_key(image, crop, key);
  MDB_val k{8, key}, v;
  int rc = mdb_get(impl_->txn.get(), impl_->reader->e.records, &k, &v);
  if (rc == MDB_NOTFOUND) return false;
  lmdb::check(rc, impl_->reader->dir, "mdb_get");
  impl_->decode(k, v, out);
  return true;
}

void ReadTxn::seek_first() {
  impl_->positioned = false;
  impl_->seek_op = MDB_FIRST;
}

void ReadTxn::seek(uint32_t image, uint32_t crop) {
  impl_->positioned = false;
  impl_->seek_op = MDB_SET_RANGE;
  encode_key(image, crop, impl_->key_buf);
  impl_->seek_key = MDB_val{8, impl_->key_buf};
}

bool ReadTxn::next(RecordView* out) {
  Impl& s = *impl_;
  MDB_val k = s.seek_key, v;
  int rc = mdb_cursor_get(s.cursor, &k, &v, s.positioned ? MDB_NEXT : static_cast<MDB_cursor_op>(s.seek_op));
  s.positioned = true;
  if (rc == MDB_NOTFOUND) return false;
  lmdb::check(rc, s.reader->dir, "mdb_cursor_get");
  s.decode(k, v, out);
  return true;
}

CacheReader::CacheReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CacheReader::~CacheReader() = default;
const CacheMeta& CacheReader::meta() const { return impl_->meta; }
const std::string& CacheReader::dir() const { return impl_->dir; }

std::unique_ptr<CacheReader> CacheReader::open(const std::string& dir, const ReaderOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->opts = opts;
  open_readonly(dir, &impl->e);
  impl->meta = read_meta(dir, impl->e);
  if (!impl->meta.complete && !opts.allow_incomplete)
    throw Error(ErrorKind::kIncomplete,
                fmt::format("{}: cache is incomplete ({} records, {} of {} images done); rerun "
                            "extract with the same command to finish it",
                            dir, impl->meta.records, impl->meta.next_image,
                            impl->meta.images.size()));
  return std::unique_ptr<CacheReader>(new CacheReader(std::move(impl)));
}

ReadTxn CacheReader::begin() const {
  auto t = std::make_unique<ReadTxn::Impl>();
  t->reader = impl_.get();
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(impl_->e.env.get(), nullptr, MDB_RDONLY, &txn);
  if (rc == MDB_MAP_RESIZED) {  // the writer grew the map since we opened
    std::lock_guard<std::mutex> lock(impl_->resize_mu);
    mdb_env_set_mapsize(impl_->e.env.get(), 0);
    rc = mdb_txn_begin(impl_->e.env.get(), nullptr, MDB_RDONLY, &txn);
  }
  lmdb::check(rc, impl_->dir, "mdb_txn_begin");
  t->txn = lmdb::Txn(txn);
  lmdb::check(mdb_cursor_open(txn, impl_->e.records, &t->cursor), impl_->dir, "mdb_cursor_open");
  return ReadTxn(std::move(t));
}

uint64_t CacheReader::record_count() const {
  ReadTxn t = begin();
  MDB_stat st;
  lmdb::check(mdb_stat(t.impl_->txn.get(), impl_->e.records, &st), impl_->dir, "mdb_stat");
  return st.ms_entries;
}

CacheMeta read_cache_meta(const std::string& dir) {
  OpenEnv e;
  open_readonly(dir, &e);
  return read_meta(dir, e);
}

}  // namespace vggcache
