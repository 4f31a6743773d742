// Shared by the tests that run the `extract` tool: a small ImageFolder split made of carbike64
// images plus bad files, running the tool, and record-by-record cache comparison.
#pragma once
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/cache.h"
#include "test_util.h"

namespace vggcache::testing {

// The bad files every fixture split contains, with the class they sit in. Sorted names matter:
// "b_..." sorts before "bicycle_...", so --strict meets a bad file in the first chunk.
inline const std::vector<std::string>& bad_files() {
  static const std::vector<std::string> v = {
      "bicycle/b_empty.jpg",      // 0 bytes
      "bicycle/b_truncated.jpg",  // a real JPEG cut in half
      "car/c_bomb.pgm",           // header claims 20000 × 20000 pixels (decompression-bomb guard)
      "car/c_dangling.jpg",       // symbolic link to nothing
      "car/c_text.png",           // not an image at all
  };
  return v;
}

// Builds DIR/{bicycle,car}/ with `per_class` carbike64 test images each, plus (when `with_bad`)
// bad_files() and an ignored notes.txt. Returns the number of image entries.
inline size_t make_split(const std::string& carbike, const std::string& dir, int per_class,
                         bool with_bad) {
  namespace fs = std::filesystem;
  for (const char* cls : {"bicycle", "car"}) {
    fs::create_directories(fs::path(dir) / cls);
    for (int i = 0; i < per_class; ++i) {
      std::string name = fmt::format("{}_{:04d}.jpg", cls, i);
      fs::copy_file(fmt::format("{}/test/{}/{}", carbike, cls, name),
                    fmt::format("{}/{}/{}", dir, cls, name));
    }
  }
  if (!with_bad) return 2 * per_class;
  write_file(dir + "/bicycle/b_empty.jpg", "");
  std::string jpeg = read_file(carbike + "/test/bicycle/bicycle_0000.jpg");
  write_file(dir + "/bicycle/b_truncated.jpg", jpeg.substr(0, jpeg.size() / 2));
  write_file(dir + "/car/c_bomb.pgm", "P5\n20000 20000\n255\n" + std::string(64, '\x80'));
  fs::create_symlink(dir + "/car/does-not-exist.jpg", dir + "/car/c_dangling.jpg");
  write_file(dir + "/car/c_text.png", "this is not a PNG\n");
  write_file(dir + "/car/notes.txt", "ignored: no image extension\n");
  return 2 * per_class + bad_files().size();
}

inline std::string extract_bin() {
  return bin_dir() + "/extract";
}

// Runs extract with `args` (already quoted where needed); returns the exit status.
inline int run_extract_cmd(const std::string& args, std::string* output) {
  return run_command(shell_quote(extract_bin()) + " " + args, output);
}

// Every record of `a` equals the one of `b`: header fields and payload bytes.
inline void expect_same_records(const std::string& a, const std::string& b) {
  auto ra = CacheReader::open(a), rb = CacheReader::open(b);
  ASSERT_EQ(ra->record_count(), rb->record_count());
  const size_t bytes = sizeof(float) * ra->meta().dim;
  ASSERT_EQ(ra->meta().dim, rb->meta().dim);
  ReadTxn ta = ra->begin(), tb = rb->begin();
  ta.seek_first();
  tb.seek_first();
  RecordView va, vb;
  uint64_t n = 0;
  while (ta.next(&va)) {
    ASSERT_TRUE(tb.next(&vb)) << "second cache ends after " << n << " records";
    const RecordHeader &x = va.header, &y = vb.header;
    const std::string where = fmt::format("record ({}, {})", x.image, x.crop);
    ASSERT_EQ(x.image, y.image) << where;
    ASSERT_EQ(x.crop, y.crop) << where;
    EXPECT_EQ(x.label, y.label) << where;
    EXPECT_EQ(x.box.x, y.box.x) << where;
    EXPECT_EQ(x.box.y, y.box.y) << where;
    EXPECT_EQ(x.box.w, y.box.w) << where;
    EXPECT_EQ(x.box.h, y.box.h) << where;
    EXPECT_EQ(x.box.flipped, y.box.flipped) << where;
    EXPECT_EQ(std::memcmp(va.data, vb.data, bytes), 0) << where << ": payloads differ";
    ++n;
  }
  EXPECT_FALSE(tb.next(&vb)) << "second cache has more records";
  EXPECT_EQ(n, ra->record_count());
}

}  // namespace vggcache::testing
