// CacheReader: read-only env with MDB_NOTLS so every thread can hold its own read transaction.
// A shard set (common/shard_set.h) is read as one cache: one env per shard, each record looked up
// in the shard that owns its image; a plain cache is the one-part case of the same code.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "common/cache.h"
#include "common/half.h"
#include "common/image_list.h"
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
  // Schemas 2 and 3 store the list on its own: JSON (2) or binary (3, common/image_list.h).
  std::vector<ImageEntry> images;
  const bool own_key = j.is_object() && !j.contains("images");
  if (own_key) {
    MDB_val ik{std::strlen(kImagesKey), const_cast<char*>(kImagesKey)}, iv;
    if (mdb_get(t, e.meta_db, &ik, &iv) != 0)
      throw Error(ErrorKind::kCorrupt, dir + ": metadata without its image list");
    const auto version = j.find("schema_version");
    const int schema = version != j.end() && version->is_number_integer() ? version->get<int>() : 0;
    const bool binary = iv.mv_size >= sizeof kImageListMagic &&
                        std::memcmp(iv.mv_data, kImageListMagic, sizeof kImageListMagic) == 0;
    try {
      // The value says what it holds (schema 3 writes binary, schema 2 JSON). A later version
      // than this build reads is not decoded: from_json refuses it by name.
      if (schema <= kSchemaVersion && binary)
        images = decode_image_list(iv.mv_data, iv.mv_size);
      else if (schema <= kSchemaVersion)
        j["images"] = nlohmann::json::parse(static_cast<const char*>(iv.mv_data),
                                            static_cast<const char*>(iv.mv_data) + iv.mv_size);
    } catch (const nlohmann::json::exception& ex) {
      throw Error(ErrorKind::kCorrupt, dir + ": the image list is not valid JSON: " + ex.what());
    } catch (const Error& ex) {
      throw Error(ex.kind(), dir + ": " + ex.what());
    }
  }
  try {
    return CacheMeta::from_json(j, own_key && !j.contains("images") ? &images : nullptr);
  } catch (const Error& ex) {
    throw Error(ex.kind(), dir + ": " + ex.what());
  }
}

// One LMDB environment: the whole cache, or one shard of a set (holding images [first, end)).
struct Part {
  std::string dir;
  OpenEnv e;
  uint32_t first = 0;
  bool runs = false;  // schema 2: values are runs of records `stride` bytes apart
  size_t rec_bytes = 0, stride = 0;

  void set_layout(const CacheMeta& m) {
    runs = m.schema_version >= 2;
    rec_bytes = record_bytes(m.codec, m.payload_floats);
    stride = record_stride(m);
  }
};

// Image and crop of an encoded record, read without checks (to search a run and name errors).
void peek_key(const unsigned char* rec, uint32_t* image, uint32_t* crop) {
  std::memcpy(image, rec + 8, 4);
  std::memcpy(crop, rec + 12, 4);
}

bool key_less(uint32_t ai, uint32_t ac, uint32_t bi, uint32_t bc) {
  return ai < bi || (ai == bi && ac < bc);
}

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
    MDB_cursor* cursor = nullptr;      // the scan's
    MDB_cursor* get_cursor = nullptr;  // get()'s, so a lookup does not move the scan
  };
  const CacheReader::Impl* reader = nullptr;
  std::vector<PartTxn> parts;
  size_t cur = 0;           // part the scan is in
  bool positioned = false;  // false: the next next() positions the cursor first
  int seek_op = MDB_FIRST;
  uint32_t seek_image = 0, seek_crop = 0;
  // The run (value) the scan is in: its records [0, run_count), the next one to return run_pos.
  const unsigned char* run = nullptr;
  size_t run_count = 0, run_pos = 0;
  uint32_t run_key_image = 0, run_key_crop = 0;  // the LMDB key of the run
  MDB_val run_val{};
  std::vector<float> scratch;    // expanded vector of the last compact record
  std::vector<float> halves;     // the last f16 record's payload as float32
  std::vector<float> unaligned;  // aligned copy of the last misaligned payload

  ~Impl() {
    for (auto& p : parts) {
      if (p.cursor) mdb_cursor_close(p.cursor);
      if (p.get_cursor) mdb_cursor_close(p.get_cursor);
    }
  }

  const Part& part(size_t i) const { return *reader->parts[i]; }

  // Records in a value: one (schema 1, its size checked by decode_record) or a whole number of
  // strides.
  size_t count_in(size_t pi, uint32_t image, uint32_t crop, const MDB_val& v) const {
    const Part& p = part(pi);
    if (!p.runs) return 1;
    if (v.mv_size == 0 || v.mv_size % p.stride != 0)
      throw Error(ErrorKind::kCorrupt,
                  fmt::format("{}: run ({}, {}) of {} bytes is not a whole number of {}-byte "
                              "records",
                              p.dir, image, crop, v.mv_size, p.stride));
    return v.mv_size / p.stride;
  }

  // Decodes record `i` of the value `v` stored under key (key_image, key_crop). Record 0 must
  // carry the key; later ones must follow the one before in key order.
  void decode(size_t pi, uint32_t key_image, uint32_t key_crop, const MDB_val& v, size_t i,
              RecordView* out) {
    const Part& pt = part(pi);
    const auto* base = static_cast<const unsigned char*>(v.mv_data);
    const unsigned char* rec = base + i * pt.stride;
    const size_t len = pt.runs ? pt.rec_bytes : v.mv_size;
    uint32_t image = key_image, crop = key_crop;
    if (pt.runs) peek_key(rec, &image, &crop);
    const CacheMeta& m = reader->meta;
    std::string what = fmt::format("{}: record ({}, {})", pt.dir, image, crop);
    const void* stored = decode_record(rec, len, reader->opts.verify, &out->header, what);
    if (i == 0 ? (out->header.image != key_image || out->header.crop != key_crop)
               : !key_less(run_prev(rec, pt.stride, 0), run_prev(rec, pt.stride, 1), image, crop))
      throw Error(ErrorKind::kCorrupt, what + (i == 0 ? ": key and record disagree"
                                                      : ": out of key order within its run"));
    if (out->header.codec != m.codec || out->header.payload_floats != m.payload_floats)
      throw Error(ErrorKind::kCorrupt, what + ": codec or size differs from the cache metadata");
    out->stored = stored;
    out->stored_bytes = len - kRecordHeaderBytes;
    const float* p = nullptr;
    if (codec_is_half(m.codec)) {
      halves.resize(m.payload_floats);
      halves_to_floats(stored, m.payload_floats, halves.data());
      p = halves.data();
    } else if (reinterpret_cast<uintptr_t>(stored) % alignof(float) != 0) {
      // Only small records inside ordinary LMDB pages can be misaligned; copy those.
      unaligned.resize(m.payload_floats);
      std::memcpy(unaligned.data(), stored, m.payload_floats * sizeof(float));
      p = unaligned.data();
    } else {
      p = static_cast<const float*>(stored);
    }
    out->payload = p;
    if (!codec_is_prepool(m.codec)) {
      out->data = p;  // raw-f32: zero-copy, a view into the memory map
    } else if (!reader->opts.expand) {
      out->data = nullptr;
    } else {  // prepool, shape validated at open
      scratch.resize(m.dim);
      const auto& s = m.prepool_shape;
      expand_prepool(p, s[0], s[1], s[2], scratch.data());
      out->data = scratch.data();
    }
  }

  // Image (field 0) or crop (field 1) of the record before `rec` in its run.
  static uint32_t run_prev(const unsigned char* rec, size_t stride, int field) {
    uint32_t image, crop;
    peek_key(rec - stride, &image, &crop);
    return field == 0 ? image : crop;
  }

  // Where (image, crop) lies in a run whose first record is (ki, kc) when no image inside it was
  // skipped; UINT64_MAX when it cannot lie there (before the run, or a crop the cache lacks).
  uint64_t expected_index(uint32_t ki, uint32_t kc, uint32_t image, uint32_t crop) const {
    const uint64_t crops = reader->meta.preprocess.eval ? 1 : reader->meta.preprocess.crops;
    if (image < ki || crop >= crops || (image == ki && crop < kc)) return UINT64_MAX;
    return (uint64_t{image} - ki) * crops + crop - kc;
  }

  // The first record of the run in `v` at or after (image, crop): binary search over the
  // records' own keys (unchecked; the record found is checked by decode).
  size_t lower_bound_in(size_t pi, const MDB_val& v, size_t count, uint32_t image,
                        uint32_t crop) const {
    const auto* base = static_cast<const unsigned char*>(v.mv_data);
    const size_t stride = part(pi).stride;
    // Where the record lies when no image in the run was skipped: one header read, one page
    // touched (a search would touch log2(count) pages of a cache that may not be in memory).
    uint32_t ki, kc;
    peek_key(base, &ki, &kc);
    const uint64_t guess = expected_index(ki, kc, image, crop);
    if (guess < count) {
      uint32_t gi, gc;
      peek_key(base + guess * stride, &gi, &gc);
      if (gi == image && gc == crop) return guess;
    }
    size_t lo = 0, hi = count;
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      uint32_t mi, mc;
      peek_key(base + mid * stride, &mi, &mc);
      if (key_less(mi, mc, image, crop))
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo;
  }

  // Positions `c` on the run holding (image, crop) or, failing that, the first run after it;
  // returns the record index within that run, or SIZE_MAX when the part has nothing at or after
  // it. Sets *k, *v to the run's key and value.
  size_t locate(size_t pi, MDB_cursor* c, uint32_t image, uint32_t crop, MDB_val* k, MDB_val* v,
                size_t* count) {
    const Part& pt = part(pi);
    unsigned char key[8];
    encode_key(image, crop, key);
    *k = MDB_val{8, key};
    int rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
    if (rc != 0 && rc != MDB_NOTFOUND) lmdb::check(rc, pt.dir, "mdb_cursor_get");
    uint32_t ki = 0, kc = 0;
    if (rc == 0) decode_key(k->mv_data, k->mv_size, &ki, &kc);
    if (rc == 0 && ki == image && kc == crop) {
      *count = count_in(pi, ki, kc, *v);
      return 0;
    }
    if (pt.runs) {  // (image, crop) may lie inside the run before
      MDB_val pk, pv;
      const int prc = mdb_cursor_get(c, &pk, &pv, rc == 0 ? MDB_PREV : MDB_LAST);
      if (prc != 0 && prc != MDB_NOTFOUND) lmdb::check(prc, pt.dir, "mdb_cursor_get");
      if (prc == 0) {
        uint32_t pi_, pc_;
        decode_key(pk.mv_data, pk.mv_size, &pi_, &pc_);
        const size_t n = count_in(pi, pi_, pc_, pv);
        const size_t at = lower_bound_in(pi, pv, n, image, crop);
        if (at < n) {
          *k = pk;
          *v = pv;
          *count = n;
          return at;
        }
      }
      if (rc != 0) return SIZE_MAX;
      // Back to the run SET_RANGE found.
      encode_key(image, crop, key);
      *k = MDB_val{8, key};
      lmdb::check(mdb_cursor_get(c, k, v, MDB_SET_RANGE), pt.dir, "mdb_cursor_get");
      decode_key(k->mv_data, k->mv_size, &ki, &kc);
    }
    if (rc != 0) return SIZE_MAX;
    *count = count_in(pi, ki, kc, *v);
    return 0;
  }

  // Part pi's lookup cursor (get()'s and span()'s), so a lookup does not move the scan.
  MDB_cursor* lookup_cursor(size_t pi) {
    PartTxn& pt = parts[pi];
    if (!pt.get_cursor)
      lmdb::check(mdb_cursor_open(pt.txn.get(), part(pi).e.records, &pt.get_cursor), part(pi).dir,
                  "mdb_cursor_open");
    return pt.get_cursor;
  }

  // Where record (image, crop) lies in the map, found from the B-tree alone: no page of a value
  // is touched (that is the point of a page hint). Within a run the place is computed as get()'s
  // first guess, which an image skipped inside the run can make wrong; a hint tolerates that.
  bool span(uint32_t image, uint32_t crop, const void** data, size_t* size) {
    const size_t pi = reader->part_of(image);
    MDB_cursor* cursor = lookup_cursor(pi);
    const Part& p = part(pi);
    unsigned char key[8];
    encode_key(image, crop, key);
    MDB_val k{8, key}, v;
    int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    if (rc != 0 && rc != MDB_NOTFOUND) lmdb::check(rc, p.dir, "mdb_cursor_get");
    uint32_t ki = 0, kc = 0;
    if (rc == 0) decode_key(k.mv_data, k.mv_size, &ki, &kc);
    if (rc == 0 && ki == image && kc == crop) {
      *data = v.mv_data;
      *size = p.runs ? p.stride : v.mv_size;
      return true;
    }
    if (!p.runs) return false;
    rc = mdb_cursor_get(cursor, &k, &v, rc == 0 ? MDB_PREV : MDB_LAST);
    if (rc == MDB_NOTFOUND) return false;
    lmdb::check(rc, p.dir, "mdb_cursor_get");
    decode_key(k.mv_data, k.mv_size, &ki, &kc);
    const uint64_t guess = expected_index(ki, kc, image, crop);
    if (guess >= count_in(pi, ki, kc, v)) return false;
    *data = static_cast<const unsigned char*>(v.mv_data) + guess * p.stride;
    *size = p.stride;
    return true;
  }

  bool get(uint32_t image, uint32_t crop, RecordView* out) {
    const size_t pi = reader->part_of(image);
    MDB_cursor* cursor = lookup_cursor(pi);
    const Part& p = part(pi);
    MDB_val k, v;
    size_t count = 0;
    const size_t at = locate(pi, cursor, image, crop, &k, &v, &count);
    if (at == SIZE_MAX) return false;
    uint32_t ki, kc;
    decode_key(k.mv_data, k.mv_size, &ki, &kc);
    uint32_t ri = ki, rc = kc;
    if (p.runs) peek_key(static_cast<const unsigned char*>(v.mv_data) + at * p.stride, &ri, &rc);
    if (ri != image || rc != crop) return false;
    decode(pi, ki, kc, v, at, out);
    return true;
  }

  // Loads the run the scan cursor stands on (key k, value v), from record `at`.
  void enter_run(const MDB_val& k, const MDB_val& v, size_t count, size_t at) {
    decode_key(k.mv_data, k.mv_size, &run_key_image, &run_key_crop);
    run = static_cast<const unsigned char*>(v.mv_data);
    run_val = v;
    run_count = count;
    run_pos = at;
  }

  bool next(RecordView* out) {
    for (;;) {
      if (run && run_pos < run_count) {
        const size_t i = run_pos++;  // past it even when it fails to decode: verify steps on
        decode(cur, run_key_image, run_key_crop, run_val, i, out);
        return true;
      }
      run = nullptr;
      MDB_cursor* c = parts[cur].cursor;
      MDB_val k, v;
      int rc;
      size_t at = 0, count = 0;
      if (!positioned && seek_op == MDB_SET_RANGE) {
        positioned = true;
        at = locate(cur, c, seek_image, seek_crop, &k, &v, &count);
        rc = at == SIZE_MAX ? MDB_NOTFOUND : 0;
      } else {
        rc = mdb_cursor_get(c, &k, &v, positioned ? MDB_NEXT : MDB_FIRST);
        positioned = true;
        if (rc == 0) {
          uint32_t ki, kc;
          decode_key(k.mv_data, k.mv_size, &ki, &kc);
          // A malformed run is reported once; the scan then steps past it (the cursor is on it).
          count = count_in(cur, ki, kc, v);
        }
      }
      if (rc == MDB_NOTFOUND) {
        if (cur + 1 == parts.size()) return false;
        ++cur;  // the next shard's records all follow this one's
        positioned = false;
        seek_op = MDB_FIRST;
        continue;
      }
      lmdb::check(rc, part(cur).dir, "mdb_cursor_get");
      enter_run(k, v, count, at);
    }
  }
};

ReadTxn::ReadTxn(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReadTxn::ReadTxn(ReadTxn&&) noexcept = default;
ReadTxn& ReadTxn::operator=(ReadTxn&&) noexcept = default;
ReadTxn::~ReadTxn() = default;

bool ReadTxn::get(uint32_t image, uint32_t crop, RecordView* out) {
  return impl_->get(image, crop, out);
}

void ReadTxn::seek_first() {
  impl_->positioned = false;
  impl_->run = nullptr;
  impl_->cur = 0;
  impl_->seek_op = MDB_FIRST;
}

void ReadTxn::seek(uint32_t image, uint32_t crop) {
  impl_->positioned = false;
  impl_->run = nullptr;
  impl_->cur = impl_->reader->part_of(image);
  impl_->seek_op = MDB_SET_RANGE;
  impl_->seek_image = image;
  impl_->seek_crop = crop;
}

bool ReadTxn::next(RecordView* out) {
  return impl_->next(out);
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
    p->set_layout(metas.back());
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
  part.set_layout(impl->meta);
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
    if (!p.runs) {
      n += st.ms_entries;
      continue;
    }
    // Runs: their sizes, read from the leaf pages (no record page is touched).
    MDB_cursor* c = t.impl_->parts[i].cursor;
    MDB_val k, v;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc != MDB_NOTFOUND;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      lmdb::check(rc, p.dir, "mdb_cursor_get");
      uint32_t image, crop;
      decode_key(k.mv_data, k.mv_size, &image, &crop);
      n += t.impl_->count_in(i, image, crop, v);
    }
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
  return impl_->span(image, crop, data, size);
}

}  // namespace vggcache
