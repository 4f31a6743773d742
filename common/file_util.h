// Small file helpers the tools share.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace vggcache {

// Writes `contents` to `path` so that readers see the old file or the whole new one, never a
// part: a temporary file beside it (named with the pid, so concurrent writers do not collide),
// flushed, then renamed over `path`. Throws Error(kIo) naming the file; on failure the temporary
// is removed and an existing `path` is left as it was.
void write_file_atomically(const std::string& path, const std::string& contents);
// The same with the contents in pieces, written in order: large tensors go to the file from where
// they are, without being joined into one buffer first. The pieces must outlive the call. Files
// of 4 MiB or more are written with O_DIRECT where the file system takes it (no page-cache copy),
// else through the page cache; the file is the same either way.
void write_file_atomically(const std::string& path, const std::vector<std::string_view>& pieces);

// Creates directory `path` and its missing parents; an existing directory is fine. Throws
// Error(kIo) "cannot create PATH: REASON".
void make_directories(const std::string& path);

// One CSV field as RFC 4180 writes it: quoted only when it holds a comma, quote or line break,
// with quotes doubled.
std::string csv_field(const std::string& s);

}  // namespace vggcache
