// Schema 3's binary image list (common/image_list.h): every kind of entry round-trips exactly, a
// carbike64-like list costs what the format promises, and damage of any kind is refused with a
// clear error, never read as a different list.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/crc32c.h"
#include "common/error.h"
#include "common/image_list.h"
#include "common/splitmix64.h"

namespace vggcache {
namespace {

std::string sha_of(uint64_t seed) {
  std::string s;
  for (int k = 0; k < 4; ++k) s += fmt::format("{:016x}", splitmix64(seed + k));
  return s;
}

// carbike64's layout: class folders, names numbered within each.
std::vector<ImageEntry> carbike_like(uint32_t per_class) {
  std::vector<ImageEntry> out;
  for (int label : {0, 1}) {
    const std::string cls = label == 0 ? "bicycle" : "car";
    for (uint32_t i = 0; i < per_class; ++i)
      out.push_back({fmt::format("{}/{}_{:04d}.jpg", cls, cls, i), 1800 + splitmix64(i) % 900,
                     sha_of(i * 7 + label), label});
  }
  return out;
}

void expect_same(const std::vector<ImageEntry>& a, const std::vector<ImageEntry>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].path, b[i].path) << i;
    EXPECT_EQ(a[i].bytes, b[i].bytes) << i;
    EXPECT_EQ(a[i].sha256, b[i].sha256) << i;
    EXPECT_EQ(a[i].label, b[i].label) << i;
  }
}

// The list with its checksum recomputed, so the parser itself meets the damage.
std::string with_crc(std::string body) {
  const uint32_t crc = crc32c(body.data(), body.size());
  for (int i = 0; i < 4; ++i) body += static_cast<char>((crc >> (8 * i)) & 0xff);
  return body;
}

TEST(ImageList, EveryKindOfEntryRoundTrips) {
  const std::string upper = "ABCDEF" + sha_of(1).substr(6);
  const std::vector<ImageEntry> in = {
      {"", 0, "", 0},                                    // empty path, no digest
      {"bicycle/bicycle_0009.jpg", 2048, sha_of(2), 0},  // shares nothing with ""
      {"bicycle/bicycle_0010.jpg", 0, sha_of(3), 0},     // shares start and end
      {"bicycle/bicycle_0010.jpg", 1, sha_of(3), 0},     // the same path again
      {"bicycle/b.jpg", 3, upper, 1},                    // shorter; uppercase digest kept as text
      {"bicycle/b.jpgx", 4, "not a digest", 1},          // longer by its end
      {"car/\xff\xfe caf\xc3\xa9.jpg", UINT64_MAX, sha_of(4), 1},  // not UTF-8
      {"aaa", 5, sha_of(5).substr(0, 63), -1},  // shared start and end could overlap
      {"aa", 6, sha_of(6) + "0", 7},
      {"aaaa", 7, sha_of(7), 2147483647},
  };
  const std::string bin = encode_image_list(in);
  ASSERT_EQ(bin.substr(0, 5), std::string("VGIL\x01", 5));
  expect_same(decode_image_list(bin.data(), bin.size()), in);
  const std::string none = encode_image_list({});
  EXPECT_TRUE(decode_image_list(none.data(), none.size()).empty());
}

TEST(ImageList, CarbikeNamesCostAboutFortyBytesAnImage) {
  const std::vector<ImageEntry> in = carbike_like(300);  // carbike64's test split
  const std::string bin = encode_image_list(in);
  expect_same(decode_image_list(bin.data(), bin.size()), in);
  const double per_image = static_cast<double>(bin.size()) / in.size();
  std::printf("%zu images: %zu bytes, %.1f an image\n", in.size(), bin.size(), per_image);
  // 32 digest bytes, 2 for the size, 1 each for the digest kind and the label, and the path as 2
  // shared lengths, its length and the 1-2 digits that changed.
  EXPECT_LE(per_image, 41.0);
}

TEST(ImageList, DamageIsRefusedNeverMisread) {
  const std::vector<ImageEntry> in = carbike_like(20);
  const std::string bin = encode_image_list(in);
  // Any flipped bit: the checksum.
  for (size_t at = 0; at < bin.size(); ++at) {
    std::string bad = bin;
    bad[at] ^= 0x20;
    try {
      decode_image_list(bad.data(), bad.size());
      ADD_FAILURE() << "byte " << at << ": no error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      const bool header = at < 5;  // the magic or the format byte
      EXPECT_TRUE(header || msg.find("checksum mismatch") != std::string::npos) << at << msg;
    }
  }
  // Cut anywhere, with a valid checksum over what is left: the parser refuses it.
  const std::string body = bin.substr(0, bin.size() - 4);
  for (size_t n = 5; n < body.size(); ++n) {
    const std::string cut = with_crc(body.substr(0, n));
    try {
      decode_image_list(cut.data(), cut.size());
      ADD_FAILURE() << "cut at " << n << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kCorrupt) << n;
      EXPECT_NE(std::string(e.what()).find("the image list is malformed"), std::string::npos)
          << e.what();
    }
  }
  // Extra bytes after the last entry, an entry sharing more than its neighbour has, an unknown
  // digest kind, a later format, no header.
  const auto refused = [](const std::string& bytes, ErrorKind kind, const std::string& needle) {
    try {
      decode_image_list(bytes.data(), bytes.size());
      ADD_FAILURE() << needle << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  refused(with_crc(body + "x"), ErrorKind::kCorrupt, "1 bytes after the last of 40 entries");
  const std::string head("VGIL\x01\x01", 6);
  refused(with_crc(head + std::string("\x03\x00\x00\x05\x00\x00", 6)), ErrorKind::kCorrupt,
          "entry 0 shares 3 + 0 bytes with a 0-byte path");
  refused(with_crc(head + std::string("\x00\x00\x01x\x05\x07\x00", 7)), ErrorKind::kCorrupt,
          "entry 0: unknown digest kind 7");
  std::string later = bin;
  later[4] = 2;
  refused(later, ErrorKind::kSchema, "image list format 2 is not supported");
  refused("[{\"path\":\"a\"}]", ErrorKind::kCorrupt, "no VGIL header");
  refused(with_crc(head.substr(0, 5) + "\xff\xff\xff\xff\x0f"), ErrorKind::kCorrupt,
          "4294967295 entries cannot fit");
}

}  // namespace
}  // namespace vggcache
