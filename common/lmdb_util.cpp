#include "common/lmdb_util.h"

namespace vggcache::lmdb {

void check(int rc, const std::string& dir, const char* what, ErrorKind kind) {
  if (rc == 0) return;
  throw Error(kind, dir + ": " + what + ": " + mdb_strerror(rc));
}

}  // namespace vggcache::lmdb
