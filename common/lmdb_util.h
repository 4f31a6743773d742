// Small RAII and error helpers around the LMDB C API, shared by the cache writer and reader.
#pragma once
#include <lmdb.h>

#include <string>

#include "common/error.h"

namespace vggcache::lmdb {

// Throws Error(kind) "<dir>: <what>: <mdb_strerror(rc)>" when rc != 0.
void check(int rc, const std::string& dir, const char* what, ErrorKind kind = ErrorKind::kIo);

// Owns an MDB_env.
class Env {
 public:
  Env() = default;
  ~Env() {
    if (env_) mdb_env_close(env_);
  }
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;
  MDB_env* get() const { return env_; }
  MDB_env** out() { return &env_; }

 private:
  MDB_env* env_ = nullptr;
};

// Owns an MDB_txn: aborted on destruction unless committed.
class Txn {
 public:
  Txn() = default;
  explicit Txn(MDB_txn* t) : txn_(t) {}
  ~Txn() { abort(); }
  Txn(Txn&& o) noexcept : txn_(o.txn_) { o.txn_ = nullptr; }
  Txn& operator=(Txn&& o) noexcept {
    abort();
    txn_ = o.txn_;
    o.txn_ = nullptr;
    return *this;
  }
  MDB_txn* get() const { return txn_; }
  void abort() {
    if (txn_) mdb_txn_abort(txn_);
    txn_ = nullptr;
  }
  int commit() {
    int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;  // commit frees the txn even on failure
    return rc;
  }

 private:
  MDB_txn* txn_ = nullptr;
};

inline constexpr const char* kRecordsDb = "records";
inline constexpr const char* kMetaDb = "meta";
inline constexpr const char* kMetaKey = "meta";

// A new environment in the directory `path` (emptied first, created if missing), mapped at
// `map_bytes`, with the cache's two sub-databases created in the write transaction it leaves open
// in *txn (a fresh cache and a repacked copy both start here). Errors name `dir`, the cache being
// written.
void create_cache_env(const std::string& path, size_t map_bytes, const std::string& dir, Env* env,
                      Txn* txn, MDB_dbi* records, MDB_dbi* meta);

}  // namespace vggcache::lmdb
