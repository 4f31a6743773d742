#include "common/lmdb_util.h"

#include <filesystem>
#include <system_error>

namespace vggcache::lmdb {

void check(int rc, const std::string& dir, const char* what, ErrorKind kind) {
  if (rc == 0) return;
  throw Error(kind, dir + ": " + what + ": " + mdb_strerror(rc));
}

void create_cache_env(const std::string& path, size_t map_bytes, const std::string& dir, Env* env,
                      Txn* txn, MDB_dbi* records, MDB_dbi* meta) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);  // what a killed earlier attempt left
  std::filesystem::create_directories(path, ec);
  if (ec) throw Error(ErrorKind::kIo, dir + ": cannot create " + path + ": " + ec.message());
  check(mdb_env_create(env->out()), dir, "mdb_env_create");
  check(mdb_env_set_maxdbs(env->get(), 4), dir, "mdb_env_set_maxdbs");
  check(mdb_env_set_mapsize(env->get(), map_bytes), dir, "mdb_env_set_mapsize");
  check(mdb_env_open(env->get(), path.c_str(), 0, 0644), dir, "mdb_env_open");
  MDB_txn* t = nullptr;
  check(mdb_txn_begin(env->get(), nullptr, 0, &t), dir, "mdb_txn_begin");
  *txn = Txn(t);
  check(mdb_dbi_open(t, kRecordsDb, MDB_CREATE, records), dir, "open records db");
  check(mdb_dbi_open(t, kMetaDb, MDB_CREATE, meta), dir, "open meta db");
}

}  // namespace vggcache::lmdb
