#include "common/file_util.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/error.h"

namespace vggcache {

void write_file_atomically(const std::string& path, const std::string& contents) {
  write_file_atomically(path, std::vector<std::string_view>{contents});
}

void write_file_atomically(const std::string& path, const std::vector<std::string_view>& pieces) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(ErrorKind::kIo, "cannot create " + tmp + ": " + std::strerror(errno));
  bool ok = true;
  for (size_t i = 0; ok && i < pieces.size(); ++i)
    ok = std::fwrite(pieces[i].data(), 1, pieces[i].size(), f) == pieces[i].size();
  ok = ok && std::fflush(f) == 0;
  const int saved = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    throw Error(ErrorKind::kIo, "cannot write " + tmp + ": " + std::strerror(ok ? errno : saved));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(ErrorKind::kIo, "cannot rename " + tmp + " to " + path + ": " + ec.message());
  }
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace vggcache
