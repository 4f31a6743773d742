// Small file helpers the tools share.
#pragma once
#include <string>

namespace vggcache {

// Writes `contents` to `path` so that readers see the old file or the whole new one, never a
// part: a temporary file beside it (named with the pid, so concurrent writers do not collide),
// flushed, then renamed over `path`. Throws Error(kIo) naming the file; on failure the temporary
// is removed and an existing `path` is left as it was.
void write_file_atomically(const std::string& path, const std::string& contents);

// One CSV field as RFC 4180 writes it: quoted only when it holds a comma, quote or line break,
// with quotes doubled.
std::string csv_field(const std::string& s);

}  // namespace vggcache
