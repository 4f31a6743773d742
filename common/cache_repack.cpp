#include "common/cache_repack.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "common/lmdb_util.h"
#include "common/record.h"

namespace fs = std::filesystem;

namespace vggcache {

namespace {

// Appends the run in `buf` (n records) under its first record's key.
void put_run(const std::string& dir, MDB_txn* t, MDB_dbi dbi, const std::vector<unsigned char>& buf,
             size_t bytes) {
  uint32_t image, crop;
  std::memcpy(&image, buf.data() + 8, 4);  // the record header's image and crop (record.h)
  std::memcpy(&crop, buf.data() + 12, 4);
  unsigned char key[8];
  encode_key(image, crop, key);
  MDB_val k{8, key}, v{bytes, nullptr};
  lmdb::check(mdb_put(t, dbi, &k, &v, MDB_APPEND | MDB_RESERVE), dir, "repacking the records");
  std::memcpy(v.mv_data, buf.data(), bytes);
}

}  // namespace

void write_repacked_copy(const std::string& dir, MDB_env* env, MDB_dbi records, MDB_dbi meta_db,
                         size_t stride, uint32_t run_records) {
  const fs::path staging = fs::path(dir) / kRepackStaging;
  MDB_envinfo info;
  mdb_env_info(env, &info);
  MDB_txn* rt = nullptr;
  lmdb::check(mdb_txn_begin(env, nullptr, MDB_RDONLY, &rt), dir, "mdb_txn_begin");
  lmdb::Txn read(rt);
  lmdb::Env out;
  lmdb::Txn write;
  MDB_dbi out_records, out_meta;
  lmdb::create_cache_env(staging.string(), info.me_mapsize, dir, &out, &write, &out_records,
                         &out_meta);
  MDB_txn* wt = write.get();
  MDB_cursor* c = nullptr;
  MDB_val k, v;
  lmdb::check(mdb_cursor_open(rt, meta_db, &c), dir, "mdb_cursor_open");
  for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    lmdb::check(mdb_put(wt, out_meta, &k, &v, 0), dir, "copying the metadata");
  mdb_cursor_close(c);
  lmdb::check(mdb_cursor_open(rt, records, &c), dir, "mdb_cursor_open");
  std::vector<unsigned char> run(run_records * stride);
  size_t n = 0;  // records in `run`
  for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (v.mv_size == 0 || v.mv_size % stride != 0) {
      mdb_cursor_close(c);
      throw Error(ErrorKind::kCorrupt,
                  fmt::format("{}: a run of {} bytes is not a whole number of {}-byte records", dir,
                              v.mv_size, stride));
    }
    for (size_t at = 0; at < v.mv_size; at += stride) {
      std::memcpy(run.data() + n * stride, static_cast<const unsigned char*>(v.mv_data) + at,
                  stride);
      if (++n == run_records) {
        put_run(dir, wt, out_records, run, n * stride);
        n = 0;
      }
    }
  }
  mdb_cursor_close(c);
  if (n > 0) put_run(dir, wt, out_records, run, n * stride);
  lmdb::check(write.commit(), dir, "committing the repacked cache");
  // The metadata once more, unchanged, so that both of LMDB's meta pages describe the complete
  // cache: a reader that attached to the lock file of the file being replaced picks its meta page
  // by that file's transaction number, and must find the whole cache whichever it picks.
  lmdb::check(mdb_txn_begin(out.get(), nullptr, 0, &wt), dir, "mdb_txn_begin");
  lmdb::Txn again(wt);
  MDB_val mk{std::strlen(lmdb::kMetaKey), const_cast<char*>(lmdb::kMetaKey)}, mv;
  lmdb::check(mdb_get(wt, out_meta, &mk, &mv), dir, "reading the copied metadata");
  const std::string meta(static_cast<const char*>(mv.mv_data), mv.mv_size);
  mv = {meta.size(), const_cast<char*>(meta.data())};
  lmdb::check(mdb_put(wt, out_meta, &mk, &mv, 0), dir, "rewriting the metadata");
  lmdb::check(again.commit(), dir, "committing the repacked cache");
}

}  // namespace vggcache
