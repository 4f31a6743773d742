// write_file_atomically: the bytes of the pieces, in order, whatever the path the write takes
// (O_DIRECT in aligned chunks plus a buffered tail for large files, the page cache for small
// ones or where O_DIRECT is refused), and the old file kept when the write cannot happen.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"
#include "test_util.h"

namespace vggcache {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Pieces of awkward sizes adding up to `total` bytes; every byte depends on its position, so a
// block written at the wrong offset shows.
std::vector<std::string> pieces_of(size_t total) {
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t size :
       {size_t{13}, size_t{4096}, size_t{1}, size_t{(4u << 20) + 7}, size_t{65535}, total}) {
    if (at >= total) break;
    size = std::min(size, total - at);
    std::string s(size, '\0');
    for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>((at + i) * 2654435761u >> 13);
    out.push_back(std::move(s));
    at += size;
  }
  return out;
}

void expect_written(const std::string& dir) {
  // Below and above the O_DIRECT threshold (4 MiB), a whole number of 4 KiB blocks and not,
  // one chunk of the staging buffer exactly and more.
  for (size_t total : {size_t{0}, size_t{100}, (size_t{4} << 20) - 1, size_t{4} << 20,
                       (size_t{4} << 20) + 1, (size_t{9} << 20) + 4095, size_t{8} << 20}) {
    SCOPED_TRACE(total);
    const std::vector<std::string> parts = pieces_of(total);
    std::vector<std::string_view> views(parts.begin(), parts.end());
    std::string want;
    for (const std::string& p : parts) want += p;
    ASSERT_EQ(want.size(), total);
    const std::string path = dir + "/out.bin";
    write_file_atomically(path, views);
    EXPECT_EQ(read_all(path), want);
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
      EXPECT_EQ(e.path().filename(), "out.bin") << "left behind: " << e.path();
  }
}

// Beside the build: a disk file system (ext4 here), so large files take the O_DIRECT path.
TEST(WriteFileAtomically, PiecesInOrderOnDisk) {
  const std::string dir =
      std::string(VGGCACHE_BIN_DIR) + "/../test-file-util-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  expect_written(dir);
  std::filesystem::remove_all(dir);
}

// tmpfs refuses O_DIRECT: the same bytes through the page cache.
TEST(WriteFileAtomically, PiecesInOrderOnTmpfs) {
  struct stat st;
  if (::stat("/dev/shm", &st) != 0 || !S_ISDIR(st.st_mode)) GTEST_SKIP() << "no /dev/shm";
  const std::string dir = "/dev/shm/vggcache-file-util-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  expect_written(dir);
  std::filesystem::remove_all(dir);
}

TEST(WriteFileAtomically, FailureNamesTheFileAndKeepsTheOldOne) {
  testing::TempDir tmp;
  const std::string path = tmp.path() + "/out.bin";
  write_file_atomically(path, std::string("old"));
  const std::string big(size_t{5} << 20, 'x');
  try {
    write_file_atomically(tmp.path() + "/missing/out.bin", std::vector<std::string_view>{big});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing/out.bin.tmp."), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_all(path), "old");
}

}  // namespace
}  // namespace vggcache
