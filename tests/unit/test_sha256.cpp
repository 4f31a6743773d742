// SHA-256 against the FIPS 180-2 example vectors, streaming, and Python's hashlib.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "common/error.h"
#include "common/sha256.h"
#include "test_util.h"

namespace vggcache {
namespace {

using testing::python;
using testing::run_command;
using testing::shell_quote;
using testing::TempDir;
using testing::write_file;

std::string hash(const std::string& s) {
  return sha256_hex(s.data(), s.size());
}

TEST(Sha256, NistVectors) {
  EXPECT_EQ(hash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hash("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                 "klmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(hash(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PaddingBoundaries) {
  // Lengths around the 55/56/64-byte padding edges, checked against one-shot hashing of the
  // same bytes fed one at a time.
  for (size_t n : {55u, 56u, 57u, 63u, 64u, 65u, 119u, 120u, 127u, 128u}) {
    std::string s(n, 'x');
    Sha256 h;
    for (char c : s) h.update(&c, 1);
    EXPECT_EQ(h.hex_digest(), hash(s)) << n;
  }
  // Known value for 64 'a's (one full block plus a padding-only block).
  EXPECT_EQ(hash(std::string(64, 'a')),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(Sha256, StreamingInOddChunks) {
  std::mt19937 rng(5);
  std::string data(100003, '\0');
  for (char& c : data) c = char(rng());
  const std::string expect = hash(data);
  for (size_t chunk : {1u, 3u, 7u, 63u, 65u, 127u, 4099u}) {
    Sha256 h;
    for (size_t pos = 0; pos < data.size(); pos += chunk) {
      h.update(data.data() + pos, std::min(chunk, data.size() - pos));
    }
    EXPECT_EQ(h.hex_digest(), expect) << chunk;
  }
  Sha256 h;  // random chunk sizes, including empty updates
  for (size_t pos = 0; pos < data.size();) {
    size_t n = std::min<size_t>(rng() % 300, data.size() - pos);
    h.update(data.data() + pos, n);
    pos += n;
  }
  EXPECT_EQ(h.hex_digest(), expect);
}

TEST(Sha256, FileMatchesPythonHashlib) {
  TempDir dir;
  std::mt19937 rng(11);
  std::string data(3 * 1024 * 1024 + 17, '\0');  // more than one read buffer
  for (char& c : data) c = char(rng());
  std::string path = dir / "blob.bin";
  write_file(path, data);
  std::string out;
  int rc = run_command(python() + " -c " +
                           shell_quote("import hashlib,sys; "
                                       "print(hashlib.sha256(open(sys.argv[1],'rb').read())"
                                       ".hexdigest())") +
                           " " + shell_quote(path),
                       &out);
  ASSERT_EQ(rc, 0) << out;
  uint64_t size = 0;
  EXPECT_EQ(sha256_file(path, &size) + "\n", out);
  EXPECT_EQ(size, data.size());
  EXPECT_EQ(sha256_file(path), hash(data));
}

TEST(Sha256, MissingFileIsIoError) {
  TempDir dir;
  std::string path = dir / "nope";
  try {
    sha256_file(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
}

}  // namespace
}  // namespace vggcache
