// CacheReader: read-only env with MDB_NOTLS so every thread can hold its own read transaction.
// A shard set (common/shard_set.h) is read as one cache: one env per shard, each record looked up
// in the shard that owns its image; a plain cache is the one-part case of the same code.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <mutex>

#include "common/cache.h"
#include "common/lmdb_util.h"
#include "common/prepool.h"
#include "common/shard_set.h"

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
  // A data file shorter than the pages its meta page claims would fault (SIGBUS) on the first
  // read through the map; refuse it here with a message instead.
  MDB_envinfo info;
  MDB_stat st;
  if (mdb_env_info(out->env.get(), &info) == 0 && mdb_env_stat(out->env.get(), &st) == 0) {
    const uint64_t need = (uint64_t{info.me_last_pgno} + 1) * st.ms_psize;
    const uint64_t have = fs::file_size(fs::path(dir) / "data.mdb", ec);
    if (!ec && have < need)
      throw Error(ErrorKind::kCorrupt, fmt::format("{}: data.mdb is truncated ({} bytes, its "
                                                   "pages need {})",
                                                   dir, have, need));
  }
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

// One LMDB environment: the whole cache, or one shard of a set (holding images [first, end)).
struct Part {
  std::string dir;
  OpenEnv e;
  uint32_t first = 0;
};

}  // namespace

struct CacheReader::Impl {
  std::string dir;
  std::vector<std::unique_ptr<Part>> parts;  // by image range; one for a plain cache
  CacheMeta meta;                            // a set's: the combined metadata
  ReaderOptions opts;
  std::mutex resize_mu;

  void open_shard_set();

  // The part whose images include `image` (the last part starting at or before it).
  size_t part_of(uint32_t image) const {
    if (parts.size() == 1) return 0;
    auto it = std::upper_bound(parts.begin() + 1, parts.end(), image,
                               [](uint32_t i, const auto& p) { return i < p->first; });
    return static_cast<size_t>(it - parts.begin()) - 1;
  }
};

struct ReadTxn::Impl {
  struct PartTxn {
    lmdb::Txn txn;
    MDB_cursor* cursor = nullptr;
  };
  const CacheReader::Impl* reader = nullptr;
  std::vector<PartTxn> parts;
  size_t cur = 0;           // part the scan is in
  bool positioned = false;  // next() returns the current entry first after a seek
  int seek_op = MDB_FIRST;
  MDB_val seek_key{};
  unsigned char key_buf[8];
  std::vector<float> scratch;    // expanded vector of the last compact record
  std::vector<float> unaligned;  // aligned copy of the last misaligned payload

  ~Impl() {
    for (auto& p : parts)
      if (p.cursor) mdb_cursor_close(p.cursor);
  }

  void decode(size_t part, const MDB_val& k, const MDB_val& v, RecordView* out) {
    uint32_t image, crop;
    decode_key(k.mv_data, k.mv_size, &image, &crop);
    const CacheMeta& m = reader->meta;
    std::string what = fmt::format("{}: record ({}, {})", reader->parts[part]->dir, image, crop);
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
  const size_t part = impl_->reader->part_of(image);
  const Part& p = *impl_->reader->parts[part];
  int rc = mdb_get(impl_->parts[part].txn.get(), p.e.records, &k, &v);
  if (rc == MDB_NOTFOUND) return false;
  lmdb::check(rc, p.dir, "mdb_get");
  impl_->decode(part, k, v, out);
  return true;
}

void ReadTxn::seek_first() {
  impl_->positioned = false;
  impl_->cur = 0;
  impl_->seek_op = MDB_FIRST;
}

void ReadTxn::seek(uint32_t image, uint32_t crop) {
  impl_->positioned = false;
  impl_->cur = impl_->reader->part_of(image);
  impl_->seek_op = MDB_SET_RANGE;
  encode_key(image, crop, impl_->key_buf);
  impl_->seek_key = MDB_val{8, impl_->key_buf};
}

bool ReadTxn::next(RecordView* out) {
  Impl& s = *impl_;
  for (;;) {
    MDB_val k = s.seek_key, v;
    int rc = mdb_cursor_get(s.parts[s.cur].cursor, &k, &v,
                            s.positioned ? MDB_NEXT : static_cast<MDB_cursor_op>(s.seek_op));
    s.positioned = true;
    if (rc == MDB_NOTFOUND) {
      if (s.cur + 1 == s.parts.size()) return false;
      ++s.cur;  // the next shard's records all follow this one's
      s.positioned = false;
      s.seek_op = MDB_FIRST;
      continue;
    }
    lmdb::check(rc, s.reader->parts[s.cur]->dir, "mdb_cursor_get");
    s.decode(s.cur, k, v, out);
    return true;
  }
}

CacheReader::CacheReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CacheReader::~CacheReader() = default;
const CacheMeta& CacheReader::meta() const {
  return impl_->meta;
}
const std::string& CacheReader::dir() const {
  return impl_->dir;
}

// Opens every shard a set lists and checks that they form one extraction (complete ones, unless
// allowed otherwise); the set's metadata is the combined one.
void CacheReader::Impl::open_shard_set() {
  Impl* impl = this;
  const std::vector<std::string> dirs = read_shard_manifest(impl->dir);
  std::vector<std::unique_ptr<Part>> parts;
  std::vector<CacheMeta> metas;
  for (const auto& d : dirs) {
    auto p = std::make_unique<Part>();
    p->dir = d;
    try {
      open_readonly(d, &p->e);
    } catch (const Error& e) {
      throw Error(e.kind(), fmt::format("shard set {}: {}", impl->dir, e.what()));
    }
    metas.push_back(read_meta(d, p->e));
    p->first = metas.back().shard.first;
    parts.push_back(std::move(p));
  }
  std::vector<size_t> order;
  try {
    order = check_shards(dirs, metas, !impl->opts.allow_incomplete);
  } catch (const Error& e) {
    throw Error(e.kind(), fmt::format("shard set {}: {}", impl->dir, e.what()));
  }
  std::vector<const CacheMeta*> ordered;
  for (size_t i : order) {
    impl->parts.push_back(std::move(parts[i]));
    ordered.push_back(&metas[i]);
  }
  impl->meta = combined_meta(ordered);
}

std::unique_ptr<CacheReader> CacheReader::open(const std::string& dir, const ReaderOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->opts = opts;
  if (is_shard_set(dir)) {
    impl->open_shard_set();
    return std::unique_ptr<CacheReader>(new CacheReader(std::move(impl)));
  }
  impl->parts.push_back(std::make_unique<Part>());
  Part& part = *impl->parts.front();
  part.dir = dir;
  open_readonly(dir, &part.e);
  impl->meta = read_meta(dir, part.e);
  if (!impl->meta.complete && !opts.allow_incomplete)
    throw Error(
        ErrorKind::kIncomplete,
        fmt::format("{}: cache is incomplete ({} records, {} of {} images done); rerun "
                    "extract with the same command to finish it",
                    dir, impl->meta.records, impl->meta.next_image, impl->meta.images.size()));
  return std::unique_ptr<CacheReader>(new CacheReader(std::move(impl)));
}

ReadTxn CacheReader::begin() const {
  auto t = std::make_unique<ReadTxn::Impl>();
  t->reader = impl_.get();
  t->parts.resize(impl_->parts.size());
  for (size_t i = 0; i < impl_->parts.size(); ++i) {
    const Part& p = *impl_->parts[i];
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(p.e.env.get(), nullptr, MDB_RDONLY, &txn);
    if (rc == MDB_MAP_RESIZED) {  // the writer grew the map since we opened
      std::lock_guard<std::mutex> lock(impl_->resize_mu);
      mdb_env_set_mapsize(p.e.env.get(), 0);
      rc = mdb_txn_begin(p.e.env.get(), nullptr, MDB_RDONLY, &txn);
    }
    lmdb::check(rc, p.dir, "mdb_txn_begin");
    t->parts[i].txn = lmdb::Txn(txn);
    lmdb::check(mdb_cursor_open(txn, p.e.records, &t->parts[i].cursor), p.dir, "mdb_cursor_open");
  }
  return ReadTxn(std::move(t));
}

uint64_t CacheReader::record_count() const {
  ReadTxn t = begin();
  uint64_t n = 0;
  for (size_t i = 0; i < impl_->parts.size(); ++i) {
    const Part& p = *impl_->parts[i];
    MDB_stat st;
    lmdb::check(mdb_stat(t.impl_->parts[i].txn.get(), p.e.records, &st), p.dir, "mdb_stat");
    n += st.ms_entries;
  }
  return n;
}

CacheMeta read_cache_meta(const std::string& dir) {
  if (is_shard_set(dir)) return CacheReader::open(dir, {/*allow_incomplete=*/true})->meta();
  OpenEnv e;
  open_readonly(dir, &e);
  return read_meta(dir, e);
}

bool ReadTxn::payload_span(uint32_t image, uint32_t crop, const void** data, size_t* size) {
  unsigned char key[8];
  encode_key(image, crop, key);
  MDB_val k{8, key}, v;
  const size_t part = impl_->reader->part_of(image);
  const Part& p = *impl_->reader->parts[part];
  // mdb_get only walks the B-tree: a value on overflow pages is located, not touched.
  const int rc = mdb_get(impl_->parts[part].txn.get(), p.e.records, &k, &v);
  if (rc == MDB_NOTFOUND) return false;
  lmdb::check(rc, p.dir, "mdb_get");
  *data = v.mv_data;
  *size = v.mv_size;
  return true;
}

}  // namespace vggcache
